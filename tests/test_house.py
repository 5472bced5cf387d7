"""The house rules of the package, measured from its source (issue 35): the sub-packages are
layered in pipeline order with no import running back up and no cycle, nothing below the CLI
imports it, functions stay short and narrow, no block is complex enough for radon to rank D or
worse, and the module map of docs/development.md names every module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "yolocompress"
# Pipeline order: a module may import its own layer and the layers before it, never a later one.
LAYERS = ["files", "registry", "darknet", "data", "engine", "compress", "deploy", "teach", "cli"]
RANK = {"files": 0, "registry": 0, **{name: i for i, name in enumerate(LAYERS) if i >= 2}}
MAX_LINES, MAX_LONG, MAX_PARAMS = 40, 2, 10     # per function; at most MAX_LONG may exceed MAX_LINES


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    mods = modules()
    return {m for m in found if m in mods and m != name}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None          # yolocompress.<layer>[.module]


def graph() -> dict[str, set[str]]:
    return {name: imports(name, path) for name, path in modules().items()}


def test_every_module_sits_in_a_known_layer():
    assert {layer(m) for m in modules() if layer(m) not in (None, "__main__")} <= set(RANK)


def test_no_import_runs_back_up_the_pipeline():
    """The top-level ``__init__`` (lazy re-exports) and ``__main__`` may name anything."""
    bad = [(m, d) for m, deps in graph().items() if layer(m) in RANK
           for d in deps if layer(d) in RANK and RANK[layer(d)] > RANK[layer(m)]]
    assert not bad, bad


def test_nothing_below_the_cli_imports_it():
    bad = [(m, d) for m, deps in graph().items() for d in deps
           if layer(d) == "cli" and layer(m) not in ("cli", "__main__")]
    assert not bad, bad


def test_no_import_cycles():
    g, state, cycles = graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in sorted(g[m]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    # a package's __init__ importing its own module is not a cycle at run time (lazy exports)
    assert not [c for c in cycles if c[0] != "yolocompress"], cycles


def functions():
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.name}", node


def n_params(node) -> int:
    a = node.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - (1 if a.args and a.args[0].arg in ("self", "cls") else 0)


def test_functions_are_short_and_narrow():
    long = sorted((node.end_lineno - node.lineno + 1, where) for where, node in functions()
                  if node.end_lineno - node.lineno + 1 > MAX_LINES)
    wide = sorted((n_params(node), where) for where, node in functions() if n_params(node) > MAX_PARAMS)
    assert len(long) <= MAX_LONG, long
    assert not wide, wide


def test_no_block_ranks_d_or_worse():
    """radon's rank D starts at cyclomatic complexity 21."""
    bad = [(f"{path.relative_to(ROOT)}:{b.name}", b.complexity) for path in modules().values()
           for b in cc_visit(path.read_text()) if b.complexity > 20]
    assert not bad, bad


def test_module_map_names_every_module():
    """Each row is ``| `sub/` | `module` (what it does), ... |`` (or ``top level``); every module
    of every sub-package (their ``__init__`` aside) is named in its row."""
    text = (ROOT / "docs" / "development.md").read_text()
    table = text[text.index("<!-- module-map -->"):text.index("<!-- /module-map -->")]
    named = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) < 3 or "`" not in cells[2]:
            continue
        sub = cells[1].strip().strip("`/") if "`" in cells[1] else ""
        named |= {".".join(filter(None, ["yolocompress", sub, m])) for m in re.findall(r"`(\w+)`", cells[2])}
    missing = [m for m, path in modules().items() if path.name != "__init__.py" and m not in named
               and not m.endswith("__main__")]
    assert not missing, f"the module map of docs/development.md leaves out {missing}"


# A string equal to a variation-point name that is not that name: documented, not hidden.
_HOMONYMS = {("shortcut", "yolocompress/compress/plan.py"): "rank_blocks' column: a block's shortcut layer index",
             ("none", "yolocompress/engine/loss.py"): "torch's reduction='none'",
             ("none", "yolocompress/compress/distill.py"): "torch's reduction='none'"}


def _modules_spelling(word: str) -> set[str]:
    """Modules holding ``word`` as a whole string constant (docstrings and messages aside)."""
    out = set()
    for path in modules().values():
        rel = str(path.relative_to(ROOT))
        if any(isinstance(n, ast.Constant) and n.value == word for n in ast.walk(ast.parse(path.read_text()))) \
                and (word, rel) not in _HOMONYMS:
            out.add(rel)
    return out


def test_each_strategy_and_layer_kind_is_spelled_in_its_registry_only():
    from yolocompress.compress.strategies import LAYERS_ONLY, STRATEGIES
    from yolocompress.darknet.cfg import BLOCK_TYPES
    for name in (*STRATEGIES, LAYERS_ONLY):
        assert _modules_spelling(name) == {"yolocompress/compress/strategies.py"}, name
    for kind in BLOCK_TYPES:
        assert _modules_spelling(kind) == {"yolocompress/darknet/cfg.py"}, kind
