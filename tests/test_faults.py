"""Faults and bad input, as a hostile or unlucky user meets them (issue 17).

* kill -9 at each write point of training, then --resume (or a rerun): the files agree with each
  other and with an uninterrupted run, bit for bit. The child process SIGKILLs itself right after
  (or right before) the n-th rename onto a given file name: no sleeps, no timing.
* a malicious pickle (its __reduce__ would create a marker file) is never executed, on any path;
* disk full (a patched write raising ENOSPC) leaves no temporary file and the old outputs intact;
* every bad argument is one ``error:`` line, exit status 2, no traceback.
"""
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from yolocompress import files as yio
from yolocompress.cli.main import main
from yolocompress.data.dataset import DataError, YoloDataset, load_data_config
from yolocompress.data.synth import ShapesConfig, make_shapes
from yolocompress.engine.train import TrainConfig, TrainingError, best_epoch, train
from yolocompress.darknet.loader import load_model
from yolocompress.darknet.weights import WeightsError, safe_load, save_darknet_weights, save_pt

ROOT = Path(__file__).resolve().parents[1]

# Epoch 1 is not evaluated (eval every 2), so best.pt is written because none exists; epoch 2 is
# evaluated and any mAP (>= 0) beats "none yet" (-1): both epochs write a new best, every time.
TRAIN = ["--cfg", "teach", "--no-figures", "--epochs", "2", "--eval-every", "2", "--img-size", "64", "--batch-size", "4",
         "--max-val-images", "4", "--amp", "off", "--quiet"]

CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(1)
target, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real, seen = os.replace, [0]
def replace(src, dst, *a, **k):
    hit = os.path.basename(dst) == target
    seen[0] += hit
    if hit and seen[0] == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *a, **k)
    if hit and seen[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from yolocompress.cli.main import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, ShapesConfig(n_train=8, n_val=4, img_size=64, seed=5), workers=1, progress=False)
    return root / "data.yaml"


@pytest.fixture
def one_thread():
    """Every run compared bit for bit uses one thread, like the killed children."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ref(tmp_path_factory, data):
    """An uninterrupted run: the reference every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *TRAIN, "--data", str(data), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def _fails(capsys, argv, *needles):
    """argv exits with status 2 and exactly one 'error:' line holding every needle."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _history(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "history.csv").drop(columns="time_s")


def _assert_agree(out: Path, ref: Path) -> None:
    """last.pt is the commit; best.pt and history.csv say what it says; nothing temporary is left;
    and the run equals the uninterrupted one."""
    ck = safe_load(out / "last.pt")
    assert (out / "history.csv").read_text() == pd.DataFrame(ck["history"]).to_csv(index=False)
    best = safe_load(out / "best.pt")
    assert best["meta"]["epoch"] == ck["best_epoch"] == best_epoch(ck["history"])
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt"]
    want = safe_load(ref / "last.pt")
    for k, v in want["state_dict"].items():
        assert torch.equal(v, ck["state_dict"][k]), k
    for k, v in safe_load(ref / "best.pt")["state_dict"].items():
        assert torch.equal(v, best["state_dict"][k]), k
    pd.testing.assert_frame_equal(_history(out), _history(ref))


# (file name, n-th rename onto it, kill before/after the rename): every write point of the 2 epochs
KILLS = [(".best.pt.next", 2, "after"),   # epoch 2's best candidate written, epoch not committed
         ("last.pt", 2, "before"),         # epoch 2's last.pt written to its temp file, not renamed
         ("last.pt", 2, "after"),          # epoch 2 committed, best.pt not yet renamed into place
         ("best.pt", 2, "after"),          # best.pt in place, history.csv still of epoch 1
         ("history.csv", 1, "after"),      # epoch 1 complete
         ("config.json", 1, "after")]      # before any epoch: nothing to resume, rerun instead


@pytest.mark.parametrize("target, nth, when", KILLS)
def test_kill_at_each_write_point_then_resume(tmp_path, data, ref, one_thread, capsys, target, nth, when,
                                              monkeypatch):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = ["train", *TRAIN, "--data", str(data), "--out", str(out)]
    child = subprocess.run([sys.executable, "-c", CHILD, target, str(nth), when, *argv], env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == -9, child.stderr[-2000:]
    if (out / "best.pt").exists() and (out / "last.pt").exists():   # never ahead of the commit
        assert safe_load(out / "best.pt")["meta"]["epoch"] <= safe_load(out / "last.pt")["epoch"] + 1
    monkeypatch.chdir(tmp_path)                   # resume from elsewhere, without --data
    if target == "config.json":
        _fails(capsys, ["train", "--out", out, "--resume"], "nothing to resume")
        assert main(argv + ["--exist-ok"]) == 0
    else:
        assert main(["train", "--out", str(out), "--resume", "--quiet", "--no-figures"]) == 0
    _assert_agree(out, ref)


def test_stale_temp_of_a_killed_run_is_removed_on_resume(tmp_path, ref):
    out = tmp_path / "run"
    shutil.copytree(ref, out)
    stale = [out / ".last.pt.abc123.tmp", out / ".history.csv.x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--no-figures"]) == 0     # nothing left to train
    assert not any(p.exists() for p in stale)


def _set_of(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("target", ["pruned.weights", "set", "pruned"])
def test_kill_during_prune_never_leaves_a_mixed_set(tmp_path, ref, capsys, target):
    """Killed while writing the new set (pruned.weights), after the old set stepped aside (set), or
    after the new set took its place (pruned): --out holds the old set whole, or nothing, or the new
    set whole; the rerun completes and leaves no temporary folder."""
    out = tmp_path / "pruned"
    argv = ["prune", "--weights", str(ref / "best.pt"), "--strategy", "union", "--out", str(out)]
    assert main(argv + ["--ratio", "0.3"]) == 0
    old = _set_of(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, target, "1", "after", *argv, "--ratio", "0.6",
                            "--exist-ok"], env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == -9, child.stderr[-2000:]
    if out.exists():
        got = _set_of(out)
        assert got == old or json.loads(got["plan.json"])["ratio"] == 0.6
        assert set(got) == set(old)
    assert main(argv + ["--ratio", "0.6", "--exist-ok"]) == 0
    assert json.loads((out / "plan.json").read_text())["ratio"] == 0.6
    assert load_model(out / "pruned.pt").cfg_text() == (out / "pruned.cfg").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]


# ----------------------------------------------------------------------------- malicious pickles

class _Evil:
    """Unpickling this calls open(marker, 'w'): code a checkpoint must never get to run."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pt(path: Path, marker: Path, like: Path) -> Path:
    payload = safe_load(like)
    payload["meta"] = {"x": _Evil(marker)}
    torch.save(payload, path)
    return path


def test_malicious_pickle_never_runs(tmp_path, data, ref, capsys):
    marker = tmp_path / "pwned"
    probe = _evil_pt(tmp_path / "probe.pt", tmp_path / "probe-ran", ref / "best.pt")
    torch.load(probe, weights_only=False)          # the payload is live: an unsafe load runs it
    assert (tmp_path / "probe-ran").exists()
    evil = _evil_pt(tmp_path / "evil.pt", marker, ref / "best.pt")
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    _evil_pt(run / "last.pt", marker, ref / "last.pt")
    common = ["--data", data, "--img-size", "64", "--quiet"]
    _fails(capsys, ["train", "--out", run, "--resume"], str(run / "last.pt"), "refused")
    _fails(capsys, ["train", "--weights", evil, *common, "--out", tmp_path / "a"], str(evil), "refused")
    _fails(capsys, ["train", "--cfg", "teach", *common, "--out", tmp_path / "b", "--teacher-weights", evil,
                    "--distill", "hinton"], str(evil), "refused")
    _fails(capsys, ["eval", "--weights", evil, "--data", data, "--img-size", "64", "--json"], "refused")
    _fails(capsys, ["prune", "--weights", evil, "--strategy", "union", "--out", tmp_path / "p"], "refused")
    with pytest.raises(WeightsError, match="refused"):
        load_model(evil)
    assert not marker.exists()


# ----------------------------------------------------------------------------- disk full

def _disk_full_on(monkeypatch, name: str) -> None:
    """Writes of files called ``name`` fail half way with ENOSPC, as on a full disk."""
    real = yio._write_synced

    def write(path, data):
        if Path(path).name.startswith(f".{name}."):
            Path(path).write_bytes(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)
    monkeypatch.setattr(yio, "_write_synced", write)


def test_disk_full_is_one_line_and_leaves_nothing_half_written(tmp_path, data, ref, capsys, monkeypatch):
    out = tmp_path / "run"
    _disk_full_on(monkeypatch, "last.pt")
    _fails(capsys, ["train", *TRAIN, "--data", data, "--out", out], str(out / "last.pt"), "disk full")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]      # no temp file, no best.pt
    exp = tmp_path / "exp"
    monkeypatch.undo()
    assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(exp), "--name", "m"]) == 0
    before = {p.name: p.read_bytes() for p in exp.iterdir()}
    _disk_full_on(monkeypatch, "m.weights")
    capsys.readouterr()
    _fails(capsys, ["export", "--weights", ref / "last.pt", "--out", exp, "--name", "m", "--exist-ok"],
           "m.weights", "disk full")
    assert {p.name: p.read_bytes() for p in exp.iterdir()} == before      # the old set, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- output sets

def test_export_sets_are_replaced_whole_and_never_elsewhere(tmp_path, ref, capsys):
    exp = tmp_path / "exp"
    assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(exp), "--name", "a"]) == 0
    _fails(capsys, ["export", "--weights", ref / "best.pt", "--out", exp, "--name", "b"], "--exist-ok")
    assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(exp), "--name", "b", "--exist-ok"]) == 0
    assert sorted(p.name for p in exp.iterdir()) == [".yolocompress-set", "b.cfg", "b.pt", "b.weights"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    _fails(capsys, ["export", "--weights", ref / "best.pt", "--out", other, "--exist-ok"], "not written by")
    assert (other / "notes.txt").read_text() == "keep me"
    _fails(capsys, ["export", "--weights", ref / "best.pt", "--out", exp, "--name", "../../x"], "--name")
    umask = os.umask(0o022)
    try:
        assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(tmp_path / "perm")]) == 0
    finally:
        os.umask(umask)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "perm").iterdir()} == {"0o644"}
    assert oct((tmp_path / "perm").stat().st_mode & 0o777) == "0o755"


# ----------------------------------------------------------------------------- diverged and NaN weights

def test_diverged_weights_are_never_checkpointed(tmp_path, data):
    class Blowup:                       # the optimizer step that diverges, made deterministic
        def after_backward(self, ctx):
            with torch.no_grad():
                ctx.model.module_list[0].conv.weight.mul_(1e6)
    out = tmp_path / "run"
    d = load_data_config(data)
    cfg = TrainConfig(epochs=1, batch_size=4, img_size=64, max_batches=1, max_val_images=4, amp="off")
    with pytest.raises(TrainingError, match=r"module_list\.0\.conv\.weight reached max \|w\|"):
        train(load_model("teach", classes=d.nc), d, cfg, out, hooks=[Blowup()], progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_nan_weights_are_refused_at_load_naming_the_layer(tmp_path, data, capsys):
    model = load_model("teach", classes=8)
    with torch.no_grad():
        model.module_list[3].conv.weight[0, 0, 0, 0] = float("nan")
    save_darknet_weights(model, tmp_path / "nan.weights")
    save_pt(model, tmp_path / "nan.pt")
    (tmp_path / "teach.cfg").write_text(model.cfg_text())
    _fails(capsys, ["eval", "--cfg", tmp_path / "teach.cfg", "--weights", tmp_path / "nan.weights", "--data", data,
                    "--img-size", "64", "--json"], "layer 3", "NaN")
    _fails(capsys, ["prune", "--weights", tmp_path / "nan.pt", "--strategy", "union", "--out", tmp_path / "p"],
           "layer 3 (module_list.3.conv.weight)", "NaN")
    assert not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- resume settings

def test_resume_refuses_conflicting_flags_and_needs_no_data(tmp_path, ref, data, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    line = _fails(capsys, ["train", "--out", run, "--resume", "--lr", "0.5", "--epochs", "3"], "--lr 0.5", "--epochs 3")
    assert "(the run has 2)" in line
    _fails(capsys, ["train", "--out", run, "--resume", "--exist-ok"], "--exist-ok")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "run", "--resume", "--quiet", "--data", str(data)]) == 0   # same data: fine
    stored = json.loads((run / "config.json").read_text())["meta"]["args"]
    assert Path(stored["data"]).is_absolute()


# ----------------------------------------------------------------------------- data faults

def test_truncated_image_found_up_front_and_skipped_on_request(tmp_path, capsys):
    root = tmp_path / "d"
    make_shapes(root, ShapesConfig(n_train=6, n_val=2, img_size=64, seed=1), workers=1, progress=False)
    bad = sorted((root / "images" / "train").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])      # header fine, pixels cut
    with Image.open(bad) as im:
        assert im.size == (64, 64)                                      # the header alone looks fine
    _fails(capsys, ["data", "check", root / "data.yaml"], bad.name)
    assert main(["data", "check", str(root / "data.yaml"), "--skip-bad"]) == 0
    assert "train: 5 images (1 skipped)" in capsys.readouterr().out
    train_argv = ["train", "--cfg", "teach", "--data", root / "data.yaml", "--epochs", "1", "--img-size", "64",
                  "--batch-size", "4", "--quiet"]
    _fails(capsys, train_argv + ["--out", tmp_path / "a"], bad.name)           # before any epoch
    assert not (tmp_path / "a" / "last.pt").exists()
    assert main([str(a) for a in train_argv] + ["--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    d = load_data_config(root / "data.yaml")
    with pytest.raises(DataError, match=bad.name):
        YoloDataset(d.train, 64, verify=True)
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        assert len(YoloDataset(d.train, 64, verify=True, on_error="skip")) == 5


def test_all_empty_labels_warn(tmp_path):
    root = tmp_path / "d"
    make_shapes(root, ShapesConfig(n_train=4, n_val=2, img_size=64, seed=2), workers=1, progress=False)
    for p in (root / "labels").rglob("*.txt"):
        p.write_text("")
    d = load_data_config(root / "data.yaml")
    cfg = TrainConfig(epochs=1, batch_size=4, img_size=64, max_batches=1, max_val_images=2, amp="off")
    with pytest.warns(UserWarning, match="all 4 training images have empty label files"):
        train(load_model("teach", classes=d.nc), d, cfg, None, progress=False)


# ----------------------------------------------------------------------------- bad arguments

NET_ONLY = "[net]\nwidth=64\nheight=64\n"
NO_YOLO = NET_ONLY + "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n"


def _bad_args(tmp_path: Path, data: Path, ref: Path) -> list:
    """(argv, words the one error line must hold) for each mistake the probe made."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "net_only.cfg").write_text(NET_ONLY)
    (tmp_path / "no_yolo.cfg").write_text(NO_YOLO)
    teach = load_model("teach", classes=8).cfg_text()
    (tmp_path / "wide.cfg").write_text(teach.replace("width=128", "width=1000000"))
    (tmp_path / "nan.cfg").write_text(teach.replace("classes=8", "classes=8\nscale_x_y=nan", 1))
    (tmp_path / "nan_anchor.cfg").write_text(teach.replace("anchors=", "anchors=nan,", 1))
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "garbage.weights").write_bytes(np.random.default_rng(1).bytes(3000))
    yaml = data.parent / "eight.yaml"            # beside data.yaml: its relative paths still hold
    yaml.write_text(data.read_text().replace("nc: 8", "nc: eight"))
    w = ["--weights", ref / "best.pt"]
    t = ["train", "--cfg", "teach", "--data", data, "--out", tmp_path / "new", "--quiet"]
    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    return [(t + ["--batch-size", "0"], ["--batch-size 0"]),
            (t + ["--eval-every", "0"], ["--eval-every 0"]),
            (t + ["--epochs", "0"], ["--epochs 0"]),
            (t + ["--img-size", "100"], ["--img-size 100", "multiple of 32"]),
            (t + ["--lr", "nan"], ["--lr nan", "finite"]),
            (t + ["--device", device], ["--device", "CUDA"]),
            (t + ["--device", "gpu7"], ["--device 'gpu7'"]),
            (["train", "--cfg", "teach", "--data", data, "--out", tmp_path / "afile"], ["is a file"]),
            (["train", "--cfg", "teach", "--data", data, "--out", tmp_path / "afile" / "sub"], ["is a file"]),
            (["train", "--cfg", "teach", "--out", tmp_path / "nodata"], ["--data is required"]),
            (["train", "--cfg", tmp_path / "no_yolo.cfg", "--data", data, "--out", tmp_path / "ny"], ["no [yolo]"]),
            (["eval", *w, "--data", data, "--img-size", "100"], ["--img-size 100"]),
            (["eval", "--weights", tmp_path / "garbage.pt", "--data", data], ["garbage.pt", "not a readable"]),
            (["eval", "--cfg", "teach", "--weights", tmp_path / "garbage.weights", "--data", data],
             ["garbage.weights"]),
            (["eval", *w, "--data", yaml], ["nc/classes", "'eight'"]),
            (["info", tmp_path / "net_only.cfg"], ["only a [net] section"]),
            (["info", tmp_path / "wide.cfg"], ["width=1000000", "GB"]),
            (["info", tmp_path / "nan.cfg"], ["scale_x_y=", "finite"]),
            (["info", tmp_path / "nan_anchor.cfg"], ["anchors=", "finite"]),
            (["prune", *w, "--strategy", "union", "--img-size", "100", "--out", tmp_path / "p"], ["--img-size 100"]),
            (["prune", *w, "--strategy", "union", "--ratio", "inf", "--out", tmp_path / "p"], ["--ratio inf"]),
            (["sweep", *w, "--data", data, "--ratios", "0.1:0.5:0", "--out", tmp_path / "s"], ["step 0"]),
            (["sweep", *w, "--data", data, "--out", ref], ["training run directory"]),
            (["detect", *w, "--source", data.parent / "images" / "val", "--out", ref], ["training run directory"]),
            (["export", *w, "--out", tmp_path / "e", "--name", "../../x"], ["--name '../../x'"]),
            (["data", "make", "--out", data.parent, "--train", "2", "--val", "1"], ["--overwrite"]),
            (["data", "make", "--out", tmp_path / "ny", "--classes", "2", "--labelled", "3"],
             ["data make", "n_labelled", "got 3"])]


def test_bad_arguments_are_one_line_exit_2(tmp_path, data, ref, capsys):
    for argv, needles in _bad_args(tmp_path, data, ref):
        _fails(capsys, argv, *needles)
    assert not any((tmp_path / n).exists() for n in ("new", "p", "s", "e", "ny", "nodata"))
    assert sorted(p.name for p in ref.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt"]


def test_unwritable_out_is_one_line_before_any_work(tmp_path, ref, capsys, monkeypatch):
    """The permission check asks the OS (os.access); root may write anywhere, so the OS's "no" is
    simulated here for the folder in question only."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real(p, mode, **k))
    for argv in (["export", "--weights", ref / "best.pt", "--out", ro / "x"],
                 ["sweep", "--weights", ref / "best.pt", "--data", ref / "nodata.yaml", "--out", ro]):
        _fails(capsys, argv, "permission denied", str(ro))


def test_os_errors_map_to_one_line():
    msg = yio.os_error_message
    assert msg(OSError(errno.ENOSPC, "No space left on device", "/x/last.pt")) == \
        "/x/last.pt: disk full (no space left on device)"
    assert msg(PermissionError(errno.EACCES, "Permission denied", "/y")) == "/y: permission denied"
    assert msg(NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/a")).endswith("is a file, not a folder")


def test_out_of_memory_is_one_line(capsys, monkeypatch):
    import yolocompress.cli.main as cli

    def alloc(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 12000000000000 bytes.")
    monkeypatch.setattr(cli, "_run_info", alloc)
    _fails(capsys, ["info", "teach"], "out of memory", "--batch-size")
    monkeypatch.setattr(cli, "_run_info", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):       # a bug is not dressed up as a user error
        main(["info", "teach"])


def test_bom_cfg_is_accepted(tmp_path):
    text = load_model("teach", classes=8).cfg_text()
    (tmp_path / "bom.cfg").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert main(["info", str(tmp_path / "bom.cfg"), "--json"]) == 0


def test_resume_from_a_file_that_is_no_last_pt_is_one_line(tmp_path, ref, capsys):
    """A run whose last.pt is a best.pt (or an exported .pt), or lacks its RNG state, is refused
    naming the file and what is missing (issue 42: it was KeyError 'history' / 'rng')."""
    for name, make in (("best", lambda run: shutil.copy(ref / "best.pt", run / "last.pt")),
                       ("no-rng", lambda run: torch.save({k: v for k, v in safe_load(ref / "last.pt").items()
                                                          if k != "rng"}, run / "last.pt"))):
        run = tmp_path / name
        shutil.copytree(ref, run)
        make(run)
        line = _fails(capsys, ["train", "--out", run, "--resume"], str(run / "last.pt"), "not a resumable")
        assert ("missing rng" in line) == (name == "no-rng") and ("history" in line) == (name == "best"), line


@pytest.mark.parametrize("field, value, said", [("epochs", "abc", "expected int"), ("batch_size", 0, "--batch-size 0"),
                                                ("lr", -1.0, "--lr -1"), ("img_size", 100, "multiple of 32")])
def test_resume_with_a_damaged_config_json_is_one_line(tmp_path, ref, capsys, field, value, said):
    """config.json read back on --resume is held to the flags' own rules (issue 42: these were a
    TypeError, a ZeroDivisionError and ValueErrors from deep inside training)."""
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    config = json.loads((run / "config.json").read_text())
    config["meta"]["args"][field] = value
    (run / "config.json").write_text(json.dumps(config))
    _fails(capsys, ["train", "--out", run, "--resume"], str(run / "config.json"), said)


def test_disk_full_under_data_make_and_detect_leaves_no_partial_file(tmp_path, ref, capsys, monkeypatch):
    """data make builds the set beside its folder and moves it in whole (shapes.json last); detect
    writes each picture and label file atomically: a full disk leaves nothing a later run takes
    for finished (issue 42: 52 images of a set; zero-byte .png / .txt beside complete ones)."""
    out = tmp_path / "set"
    _disk_full_on(monkeypatch, "shapes.json")
    assert main(["data", "make", "--out", str(out), "--train", "8", "--val", "4", "--img-size", "64"]) == 2
    err = capsys.readouterr().err                           # the progress bar, then one error line
    assert err.strip().splitlines()[-1].startswith("error: ") and "disk full" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    assert main(["data", "make", "--out", str(out), "--train", "8", "--val", "4", "--img-size", "64"]) == 0
    images = sorted((out / "images" / "val").iterdir())[:2]
    det = tmp_path / "det"
    _disk_full_on(monkeypatch, f"{images[1].stem}.txt")
    capsys.readouterr()
    assert main(["detect", "--weights", str(ref / "best.pt"), "--source", str(out / "images" / "val"),
                 "--out", str(det)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "disk full" in err and "Traceback" not in err
    from PIL import Image
    for png in det.glob("*.png"):                            # every picture there is whole (an empty .txt is
        Image.open(png).verify()                             # a valid label file: no detections)
    assert (det / f"{images[0].stem}.txt").exists() and not (det / f"{images[1].stem}.txt").exists()
    assert [p.name for p in det.iterdir() if p.name.startswith(".")] == [".yolocompress-detect"]   # no temp file


def test_disk_full_under_sweep_keeps_the_old_table_and_figure(tmp_path, data, ref, capsys, monkeypatch):
    """sweep writes sweep.csv and sweep.png atomically: a full disk on the figure leaves the new
    table (whole) and the old figure (whole), never a torn file or a temporary one (issue 42)."""
    out = tmp_path / "s"
    argv = ["sweep", "--weights", str(ref / "best.pt"), "--data", str(data), "--ratios", "0.2,0.4",
            "--max-images", "4", "--out", str(out)]
    assert main(argv) == 0
    old_png = (out / "sweep.png").read_bytes()
    _disk_full_on(monkeypatch, "sweep.png")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err                           # the progress bar, then one error line
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(out / "sweep.png") in last and "disk full" in last, err
    assert "Traceback" not in err
    assert (out / "sweep.png").read_bytes() == old_png
    import pandas as pd
    assert len(pd.read_csv(out / "sweep.csv")) >= 2                   # the table is whole
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_an_error_without_a_message_still_exits_2_with_one_line(capsys, monkeypatch):
    """An exception whose text is empty (an OSError with no errno, a bare ValueError) still gets
    one line that names what happened (issue 42: data make exited 2 with an empty message)."""
    import yolocompress.cli.main as cli
    from yolocompress.data.dataset import DataError
    for exc in (OSError(), OSError(errno.ENOSPC, ""), DataError()):
        def boom(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "validate_args", boom)
        line = _fails(capsys, ["info", "teach"])
        assert line.removeprefix("error: ").strip(), line


def test_a_set_swap_killed_between_its_renames_is_completed_not_deleted(tmp_path, ref, capsys):
    """A kill between the two renames of an --exist-ok swap leaves no set at --out, the previous
    one in .NAME.*.old/set and the new one whole in .NAME.*.tmpdir. The next run completes the swap
    before anything else, so a later error (here: missing weights) still leaves a whole set
    (issue 43: both complete sets were deleted first, leaving nothing)."""
    import shutil
    exp = tmp_path / "exp"
    assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(exp), "--name", "m"]) == 0
    whole = {p.name: p.read_bytes() for p in exp.iterdir()}
    old = tmp_path / ".exp.abc.old"
    old.mkdir()
    shutil.copytree(exp, tmp_path / ".exp.def.tmpdir")           # the new set, complete (marker in it)
    os.replace(exp, old / "set")                                   # the first rename happened, then the kill
    capsys.readouterr()
    rc = main(["export", "--weights", str(tmp_path / "missing.pt"), "--out", str(exp), "--name", "m", "--exist-ok"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.pt" in err.strip().splitlines()[-1] and "completed the set swap" in err
    assert {p.name: p.read_bytes() for p in exp.iterdir()} == whole
    assert main(["export", "--weights", str(ref / "best.pt"), "--out", str(exp), "--name", "m", "--exist-ok"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # the leftovers went after


def _hashes(root: Path) -> dict:
    """Every file under ``root`` (symlinks as their target text) with its content hash."""
    import hashlib
    return {str(p.relative_to(root)): (os.readlink(p) if p.is_symlink() else hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def test_detect_never_writes_over_an_input(tmp_path, ref, data, capsys):
    """Issue 43: --out as the source folder, as a dataset's labels/, or holding a symlink to a file
    outside: exit 2 with one line (or, for the symlink in a folder detect wrote, the link is
    replaced, never written through), and no file of the dataset or outside --out changes."""
    src = Path(data).parent
    before = _hashes(src)
    _fails(capsys, ["detect", "--weights", ref / "best.pt", "--source", src / "images" / "val",
                    "--out", src / "images" / "val"], "holds the source images")
    _fails(capsys, ["detect", "--weights", ref / "best.pt", "--source", src / "images" / "val",
                    "--out", src / "labels" / "val"], "did not write")
    assert _hashes(src) == before
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    det = tmp_path / "det"
    assert main(["detect", "--weights", str(ref / "best.pt"), "--source", str(src / "images" / "val"),
                 "--out", str(det)]) == 0
    first = sorted((src / "images" / "val").iterdir())[0].stem
    (det / f"{first}.txt").unlink()
    (det / f"{first}.txt").symlink_to(outside)
    assert main(["detect", "--weights", str(ref / "best.pt"), "--source", str(src / "images" / "val"),
                 "--out", str(det)]) == 0
    assert outside.read_text() == "keep me\n" and not (det / f"{first}.txt").is_symlink()


def test_detect_gives_same_stem_images_their_own_outputs(tmp_path, ref, data):
    src = tmp_path / "src"
    src.mkdir()
    first = sorted((Path(data).parent / "images" / "val").iterdir())[0]
    shutil.copy(first, src / "a.png")
    from PIL import Image
    Image.open(first).convert("RGB").save(src / "a.jpg")
    assert main(["detect", "--weights", str(ref / "best.pt"), "--source", str(src), "--out", str(tmp_path / "d")]) == 0
    assert {p.name for p in (tmp_path / "d").iterdir()} >= {"a_png.png", "a_png.txt", "a_jpg.png", "a_jpg.txt"}


def test_wide_images_read_by_their_range_or_refused(tmp_path):
    """Issue 43: 16-bit, 32-bit and float images loaded as all white; now scaled by their range,
    or refused in one line when there is none to read them by."""
    from PIL import Image
    from yolocompress.data.labels import load_rgb
    ramp = np.arange(64 * 64).reshape(64, 64)
    Image.fromarray((ramp * 16).astype(np.uint16)).save(tmp_path / "a.png")
    Image.fromarray((ramp / ramp.max()).astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray((ramp * 1000).astype(np.int32)).save(tmp_path / "i.tif")
    for name in ("a.png", "f.tif"):
        rgb = load_rgb(tmp_path / name)
        assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3) and rgb.min() == 0 and rgb.max() == 255, name
    with pytest.raises(ValueError, match="outside 0..65535"):
        load_rgb(tmp_path / "i.tif")


def test_data_make_overwrite_replaces_only_a_set_it_generated(tmp_path, capsys):
    """Issue 43: --overwrite deleted a hand-made dataset; it now replaces only a folder with the
    generator's stamp (shapes.json), and leaves every file of another one as it was."""
    hand = tmp_path / "mine"
    (hand / "images").mkdir(parents=True)
    (hand / "images" / "x.png").write_bytes(b"not really")
    (hand / "data.yaml").write_text("train: images\n")
    before = _hashes(hand)
    _fails(capsys, ["data", "make", "--out", hand, "--train", "4", "--val", "2", "--overwrite"], "did not generate")
    assert _hashes(hand) == before
    _fails(capsys, ["data", "make", "--out", hand, "--train", "4", "--val", "2"], "--overwrite")


@pytest.mark.parametrize("argv, said", [(["info", "teach", "--classes", "0"], "--classes 0"),
                                        (["train", "--cfg", "teach", "--data", "d.yaml", "--out", "o", "--max-batches", "0"],
                                         "--max-batches 0")])
def test_counts_of_zero_are_refused(argv, said, capsys):
    """Issue 43: --max-batches 0 trained the whole epoch and --classes 0 was ignored."""
    _fails(capsys, argv, said, "positive")


def test_demo_readme_without_its_block_is_refused_before_any_work(tmp_path, capsys):
    """Issue 43: demo --readme with a missing file or no markers was skipped silently at the end."""
    _fails(capsys, ["demo", "--readme", tmp_path / "nope.md", "--dry-run"], "does not exist")
    (tmp_path / "R.md").write_text("# no markers\n")
    _fails(capsys, ["demo", "--readme", tmp_path / "R.md", "--dry-run"], "results:start")


def test_train_exist_ok_keeps_the_old_run_when_the_data_is_bad(tmp_path, ref, data, capsys):
    """Issue 43: --exist-ok deleted the old run before the data was read; a corrupt image then
    exited 2 and the old run was gone. Now the old run's files stay until every image verified."""
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    before = _hashes(run)
    bad = tmp_path / "bad"
    shutil.copytree(Path(data).parent, bad)
    next((bad / "images" / "train").iterdir()).write_bytes(b"not an image")
    _fails(capsys, ["train", *TRAIN, "--data", bad / "data.yaml", "--out", run, "--exist-ok"], "cannot read image")
    assert _hashes(run) == before


def test_nan_outputs_are_reported_by_evaluation(ref, data):
    """Issue 43: NaN model outputs gave mAP 0.0000 with no word."""
    from yolocompress.data.dataset import load_data_config
    from yolocompress.engine.evaluate import evaluate_on
    model = load_model(ref / "best.pt")
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("conv.weight")).fill_(float("nan"))
    with pytest.warns(UserWarning, match="NaN or inf on 4 of 4 images"):
        evaluate_on(model, load_data_config(data), img_size=64)
