"""CLI verbs ``prune`` and ``sweep``."""
from __future__ import annotations

from pathlib import Path

from .common import UserError, add_model_args, announce_input, add_protect_args, model_from_flags, out_dir, print_table, \
    protect_options


def _strategy_help() -> str:
    """Each registered strategy with its one-line summary, then layers only (read from the registry)."""
    from yolocompress.compress.strategies import LAYERS_ONLY, STRATEGIES
    return "; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values()) + \
        f"; {LAYERS_ONLY} with --drop-blocks prunes layers only"


def _add_prune_config_args(p, strategies: tuple) -> None:
    """Flags of every ``PruneConfig`` field; each default is read from the dataclass (written once)."""
    from yolocompress.compress.importance import IMPORTANCES
    from yolocompress.compress.plan import RANKS, PruneConfig
    d = PruneConfig()
    p.add_argument("--strategy", choices=strategies, required=True, help=_strategy_help())
    p.add_argument("--ratio", type=float, default=d.ratio,
                   help="fraction of the threshold pool to remove (ignored with --budget)")
    p.add_argument("--min-keep", type=float, default=d.min_keep, help="union: per-layer floor, fraction of channels")
    p.add_argument("--drop-blocks", "--blocks", dest="drop_blocks", type=int, default=d.drop_blocks, metavar="N",
                   help="also drop N residual blocks (layer pruning)")
    p.add_argument("--rank", choices=RANKS, default=d.rank, help="block score for layer pruning")
    add_protect_args(p)
    p.add_argument("--round-to", type=int, default=d.round_to, metavar="N",
                   help="keep each pruned conv's channel count a multiple of N (1: off; 8 or 16 suit SIMD units)")
    p.add_argument("--budget", "--target-gflops", dest="budget", default=d.budget, metavar="B",
                   help="prune to a budget: B GFLOPs (5.2), B%% of the unpruned model's (20%%), or a latency "
                        "(8ms, see --target-latency); finds the ratio by bisection, with --drop-blocks blocks dropped too")
    p.add_argument("--importance", choices=IMPORTANCES, default=d.importance,
                   help="what the threshold ranks: " + ", ".join(f"{i.name} ({i.label})" for i in IMPORTANCES.values())
                        + "; per FLOP is the greedy knapsack under a FLOPs budget")
    p.add_argument("--img-size", type=int, default=d.img_size,
                   help="input size for GFLOPs and the budget (default: the cfg's)")


def prune_config(args):
    """The ``PruneConfig`` the flags ask for."""
    from yolocompress.compress.plan import PruneConfig
    return PruneConfig(strategy=args.strategy, ratio=args.ratio, min_keep=args.min_keep,
                       drop_blocks=args.drop_blocks, rank=args.rank, protect=protect_options(args),
                       round_to=args.round_to,
                       budget=args.budget, importance=args.importance, img_size=args.img_size)


def add_prune(sub) -> None:
    p = sub.add_parser("prune", help="channel and/or layer pruning: cfg + weights in, smaller cfg + weights out",
                       description="Prune a (sparse-trained) model. Writes OUT/pruned.cfg, OUT/pruned.weights, "
                                   "OUT/pruned.pt and OUT/plan.json, and prints a before/after table.")
    add_model_args(p, weights_required=True)
    from yolocompress.compress.strategies import strategy_choices
    _add_prune_config_args(p, strategy_choices())
    p.add_argument("--data", help="also report mAP of the original, the what-if and the compact model")
    p.add_argument("--eval-size", type=int, default=None,
                   help="input size for --data evaluation (default: the model's own; the resize is the model's too)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--exist-ok", action="store_true",
                   help="replace the set of files a previous prune/export wrote in --out (as a whole)")
    from yolocompress.deploy.latency_model import RUNTIMES
    lat = p.add_argument_group("latency budget: a per-layer latency model fitted on this machine")
    lat.add_argument("--target-latency", metavar="MS", default=None,
                     help="prune to a batch-1 CPU latency in ms (8 or 8ms; the same as --budget 8ms): fits the "
                          "latency model on compact models of this one, searches the plan, then measures the "
                          "written model")
    lat.add_argument("--latency-runtime", choices=RUNTIMES.names(), default="fused",
                     help="what the latency is measured on: fused = eager PyTorch with BN folded; onnxruntime = "
                          "the exported graph")
    lat.add_argument("--latency-threads", type=int, default=2, help="threads of the latency measurements")
    lat.add_argument("--latency-runs", type=int, default=10, help="timed forwards per fitted model")
    p.set_defaults(run=run_prune)


def run_prune(args) -> None:
    from yolocompress.deploy.export import export_darknet, reload_matches
    from yolocompress.compress.graph import build_graph
    from yolocompress.files import atomic_dir
    from yolocompress.compress.plan import make_plan
    from yolocompress.compress.surgery import apply_plan
    from yolocompress.compress.strategies import LAYERS_ONLY
    config = _with_latency_target(prune_config(args), args)
    if config.strategy == LAYERS_ONLY and not config.drop_blocks:
        raise UserError(f"--strategy {LAYERS_ONLY} prunes nothing unless --drop-blocks N is given")
    out = out_dir(args.out, args.exist_ok)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes).eval()
    graph = build_graph(model.blocks, config.protect)
    cost = _latency_cost(model, config, args)
    plan = make_plan(model, config, graph, source=str(args.weights), cost=cost)
    compact = apply_plan(model, plan, graph).eval()
    with atomic_dir(out, replace=args.exist_ok) as tmp:   # cfg, weights, pt and plan appear together
        staged = export_darknet(compact, tmp, "pruned", plan=plan.to_dict(), source=str(args.weights))
        plan.save(tmp / "plan.json")
        reload_matches(compact, staged["cfg"], staged["weights"], img_size=64)
    paths = {k: out / p.name for k, p in staged.items()}
    print(plan.describe())
    changed = plan.summary()
    print_table(changed[changed["after"] < changed["before"]], floats="{:.1f}")
    _print_before_after(model, compact, plan.img_size)
    if cost is not None:
        _report_latency(compact, plan, cost, args)
    if args.data:
        _report_map(model, plan, compact, graph, args)
    print(f"\nwrote {paths['cfg']}, {paths['weights']}, {paths['pt']}, {out / 'plan.json'}")


def _with_latency_target(config, args):
    """``--target-latency 8`` is ``--budget 8ms``; the two together are one too many."""
    from dataclasses import replace
    if args.target_latency is None:
        return config
    if args.budget is not None:
        raise UserError("give --target-latency or --budget, not both")
    spec = str(args.target_latency).strip()
    return replace(config, budget=spec if spec.lower().endswith("ms") else f"{spec}ms")


def _latency_cost(model, config, args):
    """The fitted latency model when the budget is in ms (None otherwise: GFLOPs are counted)."""
    budget = config.parsed_budget()
    if budget is None or budget.unit != "ms":
        return None
    from yolocompress.deploy.latency_model import fit_latency_model
    print(f"fitting the latency model on {args.latency_runtime} ({args.latency_threads} threads) ...", flush=True)
    fit = fit_latency_model(model, config, args.latency_runtime, runs=args.latency_runs,
                            threads=args.latency_threads)
    print(fit.describe())
    return fit.model


def _report_latency(compact, plan, cost, args) -> None:
    """Predicted against measured latency of the model just written."""
    from yolocompress.deploy.latency_model import measured_latency
    predicted = cost.measure(plan)
    ms = measured_latency(compact, cost.img_size, cost.runtime, runs=max(20, args.latency_runs),
                          threads=args.latency_threads)
    print(f"\nlatency budget {plan.target_ms:.3g} ms: predicted {predicted:.3g} ms, measured {ms:.3g} ms "
          f"on {cost.runtime} ({ms / predicted - 1:+.1%} against the prediction)")


def _print_before_after(model, compact, size: int) -> None:
    from yolocompress.deploy.footprint import summarize_blocks
    before, after = summarize_blocks(model.blocks, size), summarize_blocks(compact.blocks, size)
    print(f"\n{'':14}{'before':>14}{'after':>14}{'ratio':>8}")
    for name, a, b in (("layers", before.layers, after.layers), ("params", before.params, after.params),
                       (f"GFLOPs@{size}", before.gflops, after.gflops)):
        print(f"{name:14}{a:>14,.3f}{b:>14,.3f}{b / a:>8.3f}" if isinstance(a, float) else
              f"{name:14}{a:>14,}{b:>14,}{b / a:>8.3f}")


def _report_map(model, plan, compact, graph, args) -> None:
    from yolocompress.data.dataset import load_data_config
    from yolocompress.compress.surgery import apply_masks
    from yolocompress.darknet.netinput import resolve_input
    from yolocompress.engine.evaluate import evaluate_at
    data = load_data_config(args.data)
    if model.num_classes != data.nc:
        raise UserError(f"the model has {model.num_classes} classes, the dataset {data.nc}")
    spec = resolve_input(model, args.eval_size)
    print(f"\nmAP on {args.data} (val, input {spec.describe()}):")
    for name, m in (("original", model), ("what-if", apply_masks(model, plan, graph)), ("compact", compact)):
        r = evaluate_at(m, data, spec)
        print(f"  {name:9} mAP@0.5 {r.map50:.4f}   mAP@0.5:0.95 {r.map:.4f}")


def add_sweep(sub) -> None:
    from yolocompress.compress.importance import IMPORTANCES
    from yolocompress.compress.plan import PruneConfig
    from yolocompress.compress.strategies import STRATEGIES
    d = PruneConfig()
    p = sub.add_parser("sweep", help="mAP and GFLOPs of the what-if across prune ratios (or GFLOPs budgets)",
                       description="Sensitivity sweep: prune at each ratio, evaluate the masked what-if "
                                   "(no finetune), and report mAP and GFLOPs as a table and a plot. With "
                                   "--budgets: prune to each GFLOPs budget with every --importance ranking "
                                   "and compare them at equal GFLOPs.")
    add_model_args(p, weights_required=True)
    p.add_argument("--data", required=True, help="dataset .yaml or .data (its val split is evaluated)")
    p.add_argument("--strategy", choices=STRATEGIES, default=d.strategy, help="channel strategy pruned at each ratio")
    p.add_argument("--ratios", default="0.1:0.95:0.05", help="start:stop:step or a comma list")
    p.add_argument("--budgets", default=None, metavar="G,G,...",
                   help="instead of --ratios: GFLOPs budgets (e.g. 60%%,40%%,20%% or 0.1,0.05), each pruned "
                        f"with every importance ({', '.join(IMPORTANCES)})")
    p.add_argument("--min-keep", type=float, default=d.min_keep, help="union: per-layer floor, fraction of channels")
    p.add_argument("--drop-blocks", type=int, default=d.drop_blocks, metavar="N", help="residual blocks dropped too")
    p.add_argument("--round-to", type=int, default=d.round_to, metavar="N", help="channel counts a multiple of N")
    p.add_argument("--importance", choices=IMPORTANCES, default=d.importance, help="ranking for --ratios")
    p.add_argument("--img-size", type=int, default=None,
                   help="input side for GFLOPs and evaluation (default: the model's own; the resize is the model's)")
    p.add_argument("--max-drop", type=float, default=0.01, help="report the largest ratio within this mAP drop")
    p.add_argument("--max-images", type=int, default=None, help="evaluate on at most this many val images")
    p.add_argument("--out", default="runs/sweep", help="folder for sweep.csv and sweep.png")
    p.set_defaults(run=run_sweep)


def run_sweep(args) -> None:
    import io
    from yolocompress.data.dataset import load_data_config
    from yolocompress.files import atomic_write_bytes, atomic_write_text
    from yolocompress.compress.plan import PruneConfig
    from yolocompress.teach.sweep import importance_sweep, largest_ratio_within, parse_ratios, sensitivity_sweep
    from yolocompress.teach.viz import plot_importance, plot_sweep
    data = load_data_config(args.data)
    model = model_from_flags(args.cfg, args.weights, classes=args.classes, data_nc=data.nc).eval()
    args.img_size = announce_input(model, args).size
    config = PruneConfig(strategy=args.strategy, min_keep=args.min_keep, drop_blocks=args.drop_blocks,
                         round_to=args.round_to, importance=args.importance, img_size=args.img_size)
    if args.budgets:
        df = importance_sweep(model, config, args.budgets.split(","), data, args.max_images)
        fig = plot_importance(df)
    else:
        df = sensitivity_sweep(model, data, config, parse_ratios(args.ratios), args.img_size, args.max_images)
        fig = plot_sweep({args.strategy: df})
    out = Path(args.out)
    atomic_write_text(out / "sweep.csv", df.to_csv(index=False))
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(out / "sweep.png", png.getvalue())
    print_table(df, floats="{:.4f}")
    if not args.budgets:
        best = largest_ratio_within(df, args.max_drop)
        print(f"\nlargest ratio with mAP@0.5 within {args.max_drop} of unpruned: {best}")
    print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'}")
