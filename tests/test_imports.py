"""The library's import graph: no module takes another's underscore names, no circles.

Parsed with ast (nothing is imported), counting imports inside functions too:
a lazy import that closes a circle is still a circle.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "audioclf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for a in node.names:
                sub = f"{target}.{a.name}"
                # `from . import runs` imports the module audioclf.training.runs, not a name.
                out.append((sub, None, node.lineno) if sub in known else (target, a.name, node.lineno))
    return out


def _private_attributes(module: str, path: Path, known: set[str]) -> list[str]:
    """`training._extract` where `training` is an imported library module."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for a in node.names:
                if f"{target}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    aliases[a.asname] = a.name
    return [f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in aliases and aliases[node.value.id] != module
            and node.attr.startswith("_") and not node.attr.startswith("__")]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for mod, path in mods.items():
        for target, name, line in _imports(mod, path, known):
            if target not in known or target == mod:
                continue
            # A package's own __init__ importing its submodules is not an edge back to it.
            if not (mod in known and target.startswith(mod + ".") and path.name == "__init__.py"):
                graph[mod].add(target)
            if name and name.startswith("_") and not name.startswith("__"):
                private.append(f"{mod}:{line} imports {target}.{name}")
        private += _private_attributes(mod, path, known)
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# Packages (and top-level modules) by capability, lowest first: each imports only those before
# it (and its own modules), counting imports inside functions. docs/ARCHITECTURE.md has one
# section per entry saying what it does. "audioclf" is the front door, which imports lazily.
PACKAGE_ORDER = ["audioclf", "errors", "progress", "workspace", "limits", "audio", "jobs", "features", "datasets",
                 "engines", "model", "evaluation", "training", "tuning", "inference", "export", "insight", "labelling",
                 "cli", "__main__"]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _order_violations(graph: dict[str, set[str]], order: list[str]) -> list[str]:
    rank = {p: i for i, p in enumerate(order)}
    out = [f"{m}: package {_package(m)!r} is not in PACKAGE_ORDER" for m in graph if _package(m) not in rank]
    for mod, targets in graph.items():
        for target in targets:
            a, b = _package(mod), _package(target)
            if a != b and a in rank and b in rank and rank[b] > rank[a]:
                out.append(f"{mod} imports {target}: {a} may only import packages before it")
    return sorted(out)


def test_packages_import_only_earlier_packages():
    graph, _ = _graph()
    assert _order_violations(graph, PACKAGE_ORDER) == []


def test_the_order_checker_sees_an_upward_import():
    graph = {"audioclf.model.building": {"audioclf.training.fit"}, "audioclf.training.fit": set(),
             "audioclf.newpkg.x": set()}
    assert _order_violations(graph, PACKAGE_ORDER) == [
        "audioclf.model.building imports audioclf.training.fit: model may only import packages before it",
        "audioclf.newpkg.x: package 'newpkg' is not in PACKAGE_ORDER"]


def test_no_module_imports_another_modules_underscore_names():
    _, private = _graph()
    assert not private, "\n".join(private)


def test_no_import_cycles_among_library_modules():
    graph, _ = _graph()
    assert "audioclf.training" in graph and "audioclf.evaluation" in graph
    assert _cycles(graph) == []


def test_the_checker_sees_a_function_level_circle(tmp_path):
    """The checker itself: a lazy import closing a circle counts, an underscore name is caught."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .training import _Data\n")
    assert _imports("audioclf.m", src, set(_modules())) == [("audioclf.training", "_Data", 2)]


def test_command_groups_import_only_the_clis_shared_modules():
    """cli/<group>.py may use cli.common and cli.options, never another group (a group is one module)."""
    graph, _ = _graph()
    shared = {"audioclf.cli.common", "audioclf.cli.options"}
    assert {t for t in graph["audioclf.cli.options"] if t.startswith("audioclf.cli")} == {"audioclf.cli.common"}
    assert not {t for t in graph["audioclf.cli.common"] if t.startswith("audioclf.cli")}
    for mod in graph:
        if mod.startswith("audioclf.cli.") and mod not in shared:
            assert {t for t in graph[mod] if t.startswith("audioclf.cli")} <= shared, mod


@pytest.mark.parametrize("module", ["audioclf", "audioclf.model", "audioclf.training", "audioclf.evaluation",
                                    "audioclf.tuning", "audioclf.inference", "audioclf.export", "audioclf.insight",
                                    "audioclf.cli", "audioclf.labelling.grouping", "audioclf.labelling.corrections"])
def test_library_modules_import_without_tensorflow(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_front_door_loads_its_names_on_first_use():
    code = ("import sys, audioclf; light = not any(m.startswith('audioclf.') for m in sys.modules); "
            "names = [audioclf.load_dataset, audioclf.RunConfig, audioclf.train, audioclf.Predictor, "
            "audioclf.check_dataset]; "
            "print(light, [f'{n.__module__}.{n.__name__}' for n in names], 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("True ['audioclf.datasets.loading.load_dataset', 'audioclf.training.config.RunConfig', "
                                  "'audioclf.training.run.train', 'audioclf.inference.predict.Predictor', "
                                  "'audioclf.insight.health.check_dataset'] False")
