"""Surgery: turn a ``PrunePlan`` into a masked what-if, or into a new, smaller ``Darknet``.

A removed channel (small gamma) outputs almost a constant: act(beta). Dropping it outright would
lose that constant, so both operations first *fold* it into the consumers:

* constants are followed layer by layer through the graph - a removed conv channel starts one
  (act(beta)); shortcuts add their inputs' constants; routes concatenate and slice them;
  upsample and maxpool pass them on (max(x + c) = max(x) + c);
* a consumer conv with input constants ``c`` gains ``delta[o] = sum_i c_i * sum_kxk W[o, i]``
  at every pixel whose kernel window lies inside the image; this is moved into its BN running
  mean (``mean -= delta``) or, without BN, into its bias (``bias += delta``).

The fold is exact for 1x1 consumers and interior pixels, and approximate at zero-padded borders
of larger kernels (there the window sees fewer copies of the constant): ``fold_gap`` measures it.
A dropped residual block is the same story - its 3x3 conv's whole output becomes a constant that
the shortcut adds to its ``from`` tensor.

``apply_masks(model, plan)`` - the what-if: same architecture; removed channels get gamma = beta
= 0 (so they output exactly 0) and the fold is applied. ``apply_plan(model, plan)`` - the compact
model: new blocks with fewer filters and fewer layers, weights sliced, the same fold applied.
Both compute the same function, to float tolerance; the tests prove it on every architecture.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from yolocompress.darknet.cfg import Conv, Route, Shortcut, replace, resolve, shortcut_source
from .graph import Graph, ProtectOptions, build_graph
from .layer_rules import FoldState, rule_for
from yolocompress.darknet.model import Darknet, activation
from .plan import PlanError, PrunePlan, check_plan


@dataclass
class _Prepared:
    graph: Graph
    kept: list[np.ndarray]          # per layer output: bool mask of surviving channels
    const: list[np.ndarray]         # per layer output: the constant each channel loses (0 if none)
    delta: dict[int, np.ndarray]    # per conv: fold term to add to its pre-BN output


def _graph_for(model: Darknet, plan: PrunePlan, graph: Graph | None) -> Graph:
    """The graph the plan was made on: the caller's (built once), or built from the plan's protections."""
    if graph is None:
        return build_graph(model.blocks, ProtectOptions(**plan.protect))
    if asdict(graph.protect) != plan.protect:
        raise PlanError(f"the plan was made with protections {plan.protect}, the graph has {asdict(graph.protect)}")
    return graph


def _prepare(model: Darknet, plan: PrunePlan, graph: Graph | None = None) -> _Prepared:
    graph = _graph_for(model, plan, graph)
    check_plan(plan, graph)
    dropped = set(plan.dropped_layers)
    kept, const = _propagate(model, graph, dropped, _space_keep(graph, plan, dropped))
    delta = {}
    for i, m in model.conv_layers().items():
        c_in = const[i - 1] if i else np.zeros(model.net.channels)
        if np.any(c_in) and i not in dropped:
            delta[i] = _fold_delta(m.conv, c_in)
    return _Prepared(graph, kept, const, delta)


def _propagate(model: Darknet, graph: Graph, dropped: set, space_keep: dict) -> tuple[list, list]:
    """Surviving channels and lost constants of every layer output, in layer order, by each
    kind's fold rule (``layer_rules.RULES``; a layer kind without one raises)."""
    state = FoldState([], [], np.ones(model.net.channels, bool), np.zeros(model.net.channels), dropped,
                      mask=lambda i: _mask(graph.channel_maps[i], space_keep),
                      removed_constant=lambda i, removed: _removed_constant(model, i, removed))
    for i, b in enumerate(graph.layers):
        mask, c = rule_for(b, i, "fold").fold(b, i, state)
        state.kept.append(mask)
        state.const.append(c)
    return state.kept, state.const


def _fold_delta(conv: torch.nn.Conv2d, c_in: np.ndarray) -> np.ndarray:
    """delta[o] = sum_i c_in[i] * sum_kxk W[o, i]: what constant inputs add to each output, in
    float64. Only the input channels with a constant are read (a matrix-vector product over them)."""
    w = conv.weight.detach()                                              # (out, in / groups, k, k)
    if conv.groups > 1:
        return _grouped_delta(w.sum((2, 3)).double().numpy(), c_in, conv.groups)
    nz = np.flatnonzero(c_in)
    w = w.index_select(1, torch.from_numpy(nz)).double().flatten(1)      # (out, len(nz) * k * k)
    c = torch.from_numpy(np.repeat(c_in[nz], conv.kernel_size[0] * conv.kernel_size[1]))
    return (w @ c).numpy()


def _grouped_delta(w: np.ndarray, c_in: np.ndarray, groups: int) -> np.ndarray:
    out, per = w.shape[0] // groups, c_in.size // groups
    return np.concatenate([w[g * out:(g + 1) * out] @ c_in[g * per:(g + 1) * per] for g in range(groups)])


def _space_keep(graph: Graph, plan: PrunePlan, dropped: set) -> dict[int, set]:
    """Kept channels of each space, from any member conv that is not dropped."""
    out: dict[int, set] = {}
    for c, s in graph.space.items():
        if c in dropped:
            continue
        b = graph.layers[c]
        keep = plan.keep.get(c, list(range(b.filters)))
        out.setdefault(s, set(keep))
    return out


def _mask(cmap: np.ndarray, space_keep: dict[int, set]) -> np.ndarray:
    return np.array([s == -1 or s not in space_keep or k in space_keep[s] for s, k in cmap.tolist()], bool)


def _removed_constant(model: Darknet, i: int, removed: np.ndarray) -> np.ndarray:
    """act(beta) for removed channels of conv ``i`` (what they output when gamma -> 0), else 0."""
    layer = model.module_list[i]
    out = np.zeros(len(removed))
    if removed.any():
        beta = layer.bn.bias.detach().double()
        act = activation(model.layers[i].activation).double()
        out[removed] = act(beta).numpy()[removed]
    return out


def _folded_bias(bias: torch.Tensor, delta: np.ndarray) -> torch.Tensor:
    """bias + delta, summed in float64 and rounded once (the what-if and the compact model both
    use this, so their parameters are bit-identical)."""
    return (bias.double() + torch.from_numpy(delta)).to(bias.dtype)


def _fold(bn_or_conv, delta: np.ndarray, has_bn: bool) -> None:
    d = torch.from_numpy(delta)
    with torch.no_grad():
        if has_bn:
            bn_or_conv.running_mean.copy_((bn_or_conv.running_mean.double() - d).to(bn_or_conv.running_mean.dtype))
        else:
            bn_or_conv.bias.copy_(_folded_bias(bn_or_conv.bias, delta))


@torch.no_grad()
def apply_masks(model: Darknet, plan: PrunePlan, graph: Graph | None = None) -> Darknet:
    """The masked what-if: a copy of ``model`` in which every channel the plan removes outputs 0
    (gamma = beta = 0) and its constant is folded into the consumers. Nothing is cut.
    ``graph``: the model's graph if you have built it (else built from the plan's protections)."""
    prep = _prepare(model, plan, graph)
    out = copy.deepcopy(model)
    for i, m in out.conv_layers().items():
        if i in prep.delta:
            _fold(m.bn if m.bn is not None else m.conv, prep.delta[i], m.bn is not None)
        if m.bn is not None:
            removed = torch.from_numpy(~prep.kept[i])
            m.bn.weight[removed] = 0.0
            m.bn.bias[removed] = 0.0
    return out


def _remap(graph: Graph, dropped: set) -> tuple[dict[int, int], callable]:
    """New index of every surviving layer; alias() sends a dropped shortcut to its source."""
    new_index, n = {}, 0
    for i in range(len(graph.layers)):
        if i not in dropped:
            new_index[i] = n
            n += 1

    def alias(j: int) -> int:
        while j in dropped:
            b = graph.layers[j]
            if not isinstance(b, Shortcut):
                raise ValueError(f"layer {j} was dropped but is still referenced")
            j = shortcut_source(b, j)
        return j
    return new_index, alias


def _ref(v: int, i: int, new_index, alias) -> int:
    t = new_index[alias(resolve(v, i))]
    return t - new_index[i] if v < 0 else t


def compact_blocks(model: Darknet, plan: PrunePlan, prep: _Prepared | None = None) -> list:
    """The cfg blocks of the pruned model (filters shrunk, dropped layers gone, references remapped)."""
    prep = prep or _prepare(model, plan)
    dropped = set(plan.dropped_layers)
    new_index, alias = _remap(prep.graph, dropped)
    blocks = [model.blocks[0]]
    for i, b in enumerate(prep.graph.layers):
        if i in dropped:
            continue
        if isinstance(b, Conv):
            b = replace(b, filters=int(prep.kept[i].sum()))
        elif isinstance(b, Route):
            b = replace(b, layers=tuple(_ref(v, i, new_index, alias) for v in b.layers))
        elif isinstance(b, Shortcut):
            b = replace(b, from_=_ref(b.from_, i, new_index, alias))
        blocks.append(b)
    return blocks


@torch.no_grad()
def apply_plan(model: Darknet, plan: PrunePlan, graph: Graph | None = None) -> Darknet:
    """A new, smaller ``Darknet``: the plan's channels and blocks removed, constants folded in."""
    prep = _prepare(model, plan, graph)
    compact = Darknet.uninitialized(compact_blocks(model, plan, prep), next(model.parameters()).device)
    dropped = set(plan.dropped_layers)
    new_index, _ = _remap(prep.graph, dropped)
    for i, m in model.conv_layers().items():
        if i in dropped:
            continue
        dst = compact.module_list[new_index[i]]
        keep_out = torch.from_numpy(np.flatnonzero(prep.kept[i]))
        keep_in = torch.from_numpy(np.flatnonzero(prep.kept[i - 1] if i else np.ones(model.net.channels, bool)))
        w = m.conv.weight.index_select(0, keep_out)
        if m.conv.groups == 1:
            w = w.index_select(1, keep_in)
        dst.conv.weight.copy_(w)
        src_bn = copy.deepcopy(m.bn) if m.bn is not None else None
        src_bias = m.conv.bias.detach().clone() if m.conv.bias is not None else None
        if i in prep.delta:
            if src_bn is not None:
                _fold(src_bn, prep.delta[i], True)
            else:
                src_bias = _folded_bias(src_bias, prep.delta[i])
        if src_bn is not None:
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dst.bn, name).copy_(getattr(src_bn, name)[keep_out])
        else:
            dst.conv.bias.copy_(src_bias[keep_out])
    if hasattr(model, "darknet_header"):
        compact.darknet_header = model.darknet_header
    return compact.train(model.training)


@torch.no_grad()
def fold_gap(model: Darknet, plan: PrunePlan, x: torch.Tensor, graph: Graph | None = None) -> dict:
    """How far the what-if is from the model whose removed channels output exactly act(beta).

    Reference: ``model`` with the removed channels' gamma set to 0 (so they are truly constant);
    the difference to ``apply_masks`` is then purely the fold at zero-padded borders.
    Returns max/mean |difference| of the raw head maps over interior and border cells.
    """
    prep = _prepare(model, plan, graph)
    ref = copy.deepcopy(model).eval()
    for i, m in ref.conv_layers().items():
        if m.bn is not None:
            m.bn.weight[torch.from_numpy(~prep.kept[i])] = 0.0
    what_if = apply_masks(model, plan, prep.graph).eval()
    rows = {"interior_max": 0.0, "border_max": 0.0, "interior_mean": 0.0, "border_mean": 0.0, "scale": 0.0}
    for a, b in zip(ref.heads(x), what_if.heads(x)):
        d = (a - b).abs()                                  # (B, A, H, W, 5 + C)
        border = torch.zeros(d.shape[2:4], dtype=torch.bool)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        rows["interior_max"] = max(rows["interior_max"], float(d[:, :, ~border].max()) if (~border).any() else 0.0)
        rows["border_max"] = max(rows["border_max"], float(d[:, :, border].max()))
        rows["interior_mean"] = max(rows["interior_mean"], float(d[:, :, ~border].mean()) if (~border).any() else 0.0)
        rows["border_mean"] = max(rows["border_mean"], float(d[:, :, border].mean()))
        rows["scale"] = max(rows["scale"], float(a.abs().mean()))
    return rows
