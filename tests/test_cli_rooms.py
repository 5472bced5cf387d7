"""Issue 35's moves: each CLI verb in the module named for its stage, the protections reaching sparse
training from the command line, the evaluator passed into ``evaluate``, the typed training hooks."""
from __future__ import annotations

import pytest
import torch

from yolocompress.cli import deploy, evaluate as cli_evaluate, prune, train as cli_train
from yolocompress.cli.main import build_parser, validate_args
from yolocompress.cli.train import _configs
from yolocompress.compress.distill import DistillTerm
from yolocompress.compress.graph import ProtectOptions
from yolocompress.compress.sparsity import scopes
from yolocompress.darknet.loader import load_model
from yolocompress.engine.evaluate import evaluate
from yolocompress.engine.hooks import LossTerm, TrainHook, as_hook


def _sub(verb: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sub.choices[verb]


def test_each_verb_runs_from_its_room():
    rooms = {"train": cli_train.run_train, "eval": cli_evaluate.run_eval, "detect": deploy.run_detect,
             "export": deploy.run_export, "prune": prune.run_prune, "sweep": prune.run_sweep}
    assert {verb: _sub(verb).get_default("run") for verb in rooms} == rooms


def test_sweep_help_renders(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    assert "--budgets" in capsys.readouterr().out


@pytest.mark.parametrize("flags, protect", [([], ProtectOptions()),
                                            (["--no-protect-spp"], ProtectOptions(spp=False)),
                                            (["--no-protect-upsample"], ProtectOptions(upsample=False)),
                                            (["--no-protect-spp", "--no-protect-upsample"],
                                             ProtectOptions(spp=False, upsample=False))])
def test_train_protections_reach_the_sparse_config_as_prune_reads_them(flags, protect):
    args = build_parser().parse_args(["train", "--data", "d.yaml", "--out", "o", "--sparsity", "0.01", *flags])
    _, sc, _ = _configs(args)
    assert sc.protect == protect
    pargs = build_parser().parse_args(["prune", "--weights", "w.pt", "--out", "o", "--strategy", "union", *flags])
    assert prune.prune_config(pargs).protect == protect


def test_sparsity_scope_choices_are_the_registry():
    action = next(a for a in _sub("train")._actions if a.dest == "sparsity_scope")
    assert tuple(action.choices) == scopes()
    assert all(name in action.help for name in scopes())


def test_validate_args_table_keeps_each_check():
    from yolocompress.cli.common import UserError
    from yolocompress.compress.errors import PlanError
    parse = build_parser().parse_args
    for argv, msg in ((["eval", "--weights", "w", "--data", "d", "--img-size", "100"], "multiple of 32"),
                      (["eval", "--weights", "w", "--data", "d", "--batch-size", "0"], "positive number"),
                      (["train", "--out", "o", "--lr", "0"], "positive learning rate"),
                      (["train", "--out", "o", "--temperature", "-1"], "--temperature -1.0: expected a positive"),
                      (["train", "--out", "o", "--decay-at", "2"], "fraction"),
                      (["train", "--out", "o", "--lr", "nan"], "finite"),
                      (["export", "--weights", "w", "--out", "o", "--name", "a/b"], "file name stem"),
                      (["sweep", "--weights", "w", "--data", "d", "--ratios", "x"], "ratio")):
        with pytest.raises((UserError, PlanError), match=msg):
            validate_args(parse(argv))


class _Recorder:
    def __init__(self):
        self.batches = 0

    def update(self, pred, targets):
        self.batches += 1

    def compute(self):
        return "scored"


def test_evaluate_takes_the_evaluator_passed_in():
    model = load_model("teach", classes=2)
    loader = [(torch.zeros(2, 3, 64, 64), torch.zeros(0, 6), None)] * 3
    ev = _Recorder()
    assert evaluate(model, loader, ("a", "b"), 64, evaluator=ev) == "scored"
    assert ev.batches == 3


def test_hooks_that_do_not_subclass_get_no_ops():
    calls = []

    class Partial:
        def after_backward(self, ctx):
            calls.append(ctx)

    hook = as_hook(Partial())
    assert isinstance(hook, TrainHook)
    hook.on_train_start("ctx")
    hook.on_epoch_end("ctx", {})
    hook.after_backward("ctx")
    assert calls == ["ctx"]
    own = TrainHook()
    assert as_hook(own) is own


def test_distill_term_is_a_loss_term():
    assert issubclass(DistillTerm, LossTerm)
