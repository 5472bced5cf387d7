"""Class names from the files darknet users keep them in: a ``.names`` file, a ``.data`` file, or a yaml.

* ``.names`` (darknet's ``get_labels``): one class name per line, line ``i`` is class ``i - 1``.
  Trailing blank lines are ignored; a blank line *between* names is refused, because darknet
  would read it as a class named "" and every later id would shift.
* ``.data`` (darknet's ``read_data_cfg``): ``key = value`` lines; ``names =`` points at a
  ``.names`` file (relative to the ``.data`` file's folder, its parent, or the working
  directory, as darknet's examples assume); ``classes =``, when given, must match.
* ``.yaml`` / ``.yml`` (Ultralytics style): ``names:`` a list or an ``{id: name}`` mapping,
  optional ``nc:``. ``train``/``val`` are not needed here.

Every mistake raises ``DataError`` naming the file (and line) with what was expected and found.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "coco.names"
    >>> _ = p.write_text("person\\nbicycle\\n\\n")
    >>> load_names(p)
    ('person', 'bicycle')
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


from .dataset import DataError, load_yaml, parse_names

__all__ = ["load_names", "check_names", "label"]


def load_names(path: str | Path) -> tuple[str, ...]:
    """Class names (index = class id) from a ``.names``, ``.data`` or ``.yaml``/``.yml`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class-names file not found (expected a .names, .data or .yaml file)")
    suffix = path.suffix.lower()
    if suffix == ".data":
        return _from_data(path)
    if suffix in (".yaml", ".yml"):
        return _from_yaml(path)
    return _from_names(path)


def check_names(names: Sequence[str], classes: int, source: str | Path) -> tuple[str, ...]:
    """``names`` unchanged if there is one per class; otherwise a DataError saying both counts."""
    if len(names) != classes:
        raise DataError(f"{source}: expected {classes} class names (the model's [yolo] classes=), "
                        f"found {len(names)}")
    return tuple(names)


def label(names: Sequence[str], cls: int) -> str:
    """The name of class ``cls``, or its id as text when no name is known."""
    return names[cls] if 0 <= cls < len(names) else str(cls)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as UTF-8 text ({e})") from None


def _from_names(path: Path) -> tuple[str, ...]:
    lines = [ln.strip() for ln in _read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, name in enumerate(lines, 1):
        if not name:
            raise DataError(f"{path}:{i}: expected a class name, found a blank line "
                            f"(darknet would read it as class {i - 1} named '')")
    if not lines:
        raise DataError(f"{path}: expected one class name per line, found none")
    return tuple(lines)


def _from_data(path: Path) -> tuple[str, ...]:
    kv: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise DataError(f"{path}:{i}: expected 'key = value', found {line!r}")
        k, v = (s.strip() for s in line.split("=", 1))
        kv[k] = (v, i)
    if "names" not in kv:
        raise DataError(f"{path}: expected a 'names = <file>.names' line, found keys {sorted(kv)}")
    rel, line_no = kv["names"]
    bases = [path.parent.resolve(), path.parent.resolve().parent, Path.cwd()]
    cands = [Path(rel)] if Path(rel).is_absolute() else [b / rel for b in bases]
    names_file = next((c for c in cands if c.is_file()), None)
    if names_file is None:
        raise DataError(f"{path}:{line_no}: names = {rel}: file not found (looked in "
                        f"{', '.join(str(c.parent) for c in cands)})")
    names = _from_names(names_file)
    if "classes" in kv:
        value, cline = kv["classes"]
        if not value.isdigit() or int(value) != len(names):
            raise DataError(f"{path}:{cline}: classes = {value}, but {names_file} has {len(names)} names")
    return names


def _from_yaml(path: Path) -> tuple[str, ...]:
    d = load_yaml(_read_text(path), path)
    if not isinstance(d, dict) or "names" not in d:
        raise DataError(f"{path}: expected a mapping with a 'names' key, found "
                        f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
    if not d["names"]:
        raise DataError(f"{path}: names: expected a non-empty list or {{id: name}} mapping, found {d['names']!r}")
    return parse_names(d["names"], d.get("nc"), path)     # the dataset yaml's own rules
