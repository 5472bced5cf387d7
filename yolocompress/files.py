"""Small file helpers shared by every stage: atomic writes, so a crash never leaves half a file,
and atomic *sets* of files, so a crash never leaves a set that looks complete but is not.

Rules every writer here follows:
* a file is written to a temporary name beside its target, flushed to disk, and renamed over the
  target (``os.replace``, atomic on POSIX): a reader sees the old file or the new one, never half;
* temporary files are removed on every exit path Python sees (exceptions, Ctrl-C); a SIGKILL
  leaves a ``.NAME.*.tmp`` behind, which :func:`remove_stale_temps` deletes on the next run;
* outputs get the usual permissions (0o666 masked by the umask), not mkstemp's private 0600;
* an output *set* (prune's cfg + weights + pt + plan, export's files) is written into a temporary
  folder that is renamed into place only when every file is there (:func:`atomic_dir`).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

SET_MARKER = ".yolocompress-set"   # written into every atomic output folder: lists its files


def _umask() -> int:
    """The process umask (reading it means setting it; done once per call, restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(directory: bool = False) -> int:
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success rename it over ``path`` (atomic on POSIX).

    An exception leaves the old file (if any) untouched and removes the temporary one. The new
    file gets the permissions a plain ``open()`` would give it (0o666 & ~umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` and flush it to the device, so a rename after this never exposes an empty file."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; an OSError names ``path`` (not the temporary file)."""
    try:
        with atomic_path(path) as tmp:
            _write_synced(tmp, data)
    except OSError as e:
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` atomically. Serialised in memory first: torch's own file writer turns a full
    disk into ``RuntimeError: unexpected pos``; a plain write raises ``OSError(ENOSPC)``, which the
    CLI reports in one line."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getbuffer())


def remove_stale_temps(folder: str | Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete temporary files (``.NAME.*.tmp``) and folders (``.NAME.*.tmpdir``, ``.NAME.*.old``)
    a killed process left in ``folder``; ``names`` limits it to those target names."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.iterdir():
        if not p.name.startswith(".") or not p.name.endswith((".tmp", ".tmpdir", ".old")):
            continue
        if names is not None and not any(p.name.startswith(f".{n}.") for n in names):
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        gone.append(p)
    return gone


# ----------------------------------------------------------------------------- output sets

def check_output_dir(path: str | Path, replace: bool) -> Path:
    """Refuse an output folder that cannot take a new set, before any work is done.

    ``path`` must not be a file; an existing non-empty folder needs ``replace``, and then it must be
    a set this package wrote (it holds ``SET_MARKER``): ``--exist-ok`` replaces a previous output
    set as a whole, never a folder of someone's other files.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--out {path} is a file, expected a folder")
    complete_interrupted_swap(path)
    remove_stale_temps(path.parent, (path.name,))
    if not path.is_dir() or not any(path.iterdir()):
        return path
    if not replace:
        raise FileExistsError(f"output folder {path} exists and is not empty; choose another --out or "
                              "pass --exist-ok to replace the set it holds")
    if not (path / SET_MARKER).is_file():
        raise FileExistsError(f"output folder {path} was not written by prune/export (no {SET_MARKER} in it), "
                              "so --exist-ok will not replace it; choose another --out")
    return path


def complete_interrupted_swap(path: str | Path) -> Path | None:
    """Finish a set swap a killed process left half done, so no complete set is ever deleted.

    A kill between ``_swap_in``'s two renames leaves no ``path``, the previous set in
    ``.NAME.*.old/set`` and the new one, whole (it holds ``SET_MARKER``), in ``.NAME.*.tmpdir``.
    The swap is completed: the newest whole new set moves in; failing that the previous set moves
    back. Returns the folder moved to ``path`` (None when there was nothing to do); the leftovers
    are then stale temporaries that ``remove_stale_temps`` may delete.
    """
    path = Path(path)
    if path.exists() or path.is_symlink() or not path.parent.is_dir():
        return None

    def whole(pattern: str) -> list[Path]:
        found = [p for p in path.parent.glob(pattern) if p.is_dir() and not p.is_symlink()
                 and (p / SET_MARKER).is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    for src in whole(f".{glob.escape(path.name)}.*.tmpdir") + whole(f".{glob.escape(path.name)}.*.old/set"):
        os.replace(src, path)
        print(f"note: completed the set swap a stopped run left in {path.parent} ({src.name} -> {path.name})",
              file=sys.stderr)
        return src
    return None


@contextlib.contextmanager
def atomic_dir(path: str | Path, replace: bool = False):
    """Yield a temporary folder beside ``path``; when the block succeeds, write ``SET_MARKER`` into
    it and rename it to ``path`` (replacing a previous set as a whole when ``replace``).

    A crash inside the block leaves ``path`` as it was. Between the two renames of a replacement a
    crash leaves no ``path`` and the previous set as ``.NAME.*.old`` - never a mix of two sets.
    """
    path = check_output_dir(path, replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmpdir", dir=path.parent))
    try:
        os.chmod(tmp, _default_mode(directory=True))
        yield tmp
        files = sorted(p.name for p in tmp.iterdir())
        atomic_write_text(tmp / SET_MARKER, json.dumps({"files": files}, indent=1))
        _swap_in(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _swap_in(tmp: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, old / "set")       # the previous set steps aside in one rename ...
    os.replace(tmp, path)                   # ... and the new one takes its place in another
    if old is not None:
        shutil.rmtree(old)


# ----------------------------------------------------------------------------- OS errors

_OS_REASONS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError: what failed (the file) and why, in words."""
    why = _OS_REASONS.get(e.errno, e.strerror or type(e).__name__)
    files = [f for f in (e.filename, e.filename2) if f]
    if not files:
        return f"{why}" + (f" ({e})" if not e.errno else "")
    return f"{' -> '.join(map(str, files))}: {why}"
