"""Imports only go down the layers of DESIGN.md, never in a circle, and no import hides inside a function to
dodge one: every module's imports are parsed (ast) and held to the layer table below."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hydranet"

# Bottom to top; a module may import from its own layer and the ones below. Every top-level module or package of
# hydranet must be listed, so a new one is placed on purpose.
LAYERS = [
    {"hydranet", "errors", "files", "randomness", "registry", "kinds", "distributed"},  # ground floor (kinds: config validates against it)
    {"config"},
    {"tasks", "rundir"},
    {"data", "models"},
    {"train"},
    {"mtl", "robust", "ssl", "tune", "predict", "baseline", "export", "monitor", "calibrate", "fairness", "serve", "explain", "report", "meta", "compress"},  # features
    {"cli", "api", "__main__"},  # __main__: `python -m hydranet`, the cli
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}
ENTRY_POINTS = LAYERS[-1]  # may import lazily, so `hydranet --help` does not load torch


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def area(module: str) -> str:
    """The layer-table entry of a dotted hydranet module: its top-level module or package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(tree: ast.Module):
    """(line, imported hydranet modules, lazy?) of every import; lazy: inside a function."""
    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                continue  # type-only imports never run
            inside = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found = [a.name for a in child.names if a.name.split(".")[0] == "hydranet"]
            elif isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] == "hydranet":
                found = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            else:
                found = []
            if found:
                yield child.lineno, found, inside
            yield from visit(child, inside)
    yield from visit(tree, False)


def all_modules():
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        yield path, module_name(path), text.splitlines(), ast.parse(text)


def test_every_area_has_a_layer():
    areas = {area(module_name(p)) for p in SRC.rglob("*.py")}
    assert areas <= set(LAYER), f"place these in tests/test_layers.py's LAYERS: {sorted(areas - set(LAYER))}"


def test_imports_only_go_down():
    upward = []
    for path, module, _, tree in all_modules():
        relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{module}:{relative[0]}: a relative import (this test reads absolute ones)"
        for line, targets, _ in imports(tree):
            target = targets[0]
            if LAYER[area(target)] > LAYER[area(module)]:
                upward.append(f"{module}:{line} imports {target} ({area(module)} is below {area(target)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_lazy_import_dodges_a_circle():
    """Below the entry points, an import inside a function must say why on its line (`# lazy: …`, e.g. matplotlib's
    import time); a circle is never the reason, since the modules it names already obey the layers."""
    hidden = []
    for path, module, lines, tree in all_modules():
        if area(module) in ENTRY_POINTS:
            continue
        for line, targets, lazy in imports(tree):
            if lazy and "# lazy:" not in lines[line - 1] and "# lazy:" not in lines[line - 2]:
                hidden.append(f"{module}:{line} imports {targets[0]} inside a function")
    assert not hidden, "\n".join(hidden)


def loaded_by(target: str) -> list[str]:
    """What importing `target` runs: each enclosing package's __init__, then the module itself."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def test_no_module_level_import_circle():
    """Module-level imports form no cycle (a submodule importing its own package's __init__ aside)."""
    known = {module for _, module, _, _ in all_modules()}
    graph = {}
    for _, module, _, tree in all_modules():
        edges = set()
        for _, targets, lazy in imports(tree):
            if lazy:
                continue
            for loaded in {m for target in targets for m in loaded_by(target)}:
                if loaded in known and loaded != module and not module.startswith(loaded + "."):
                    edges.add(loaded)
        graph[module] = edges
    state, cycles = {}, []

    def walk(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_tests_import_their_helpers_by_package_path():
    """A helper module of the tests (tests/conftest.py, tests/export/exportruns.py) is imported as `tests.…`: a bare
    `import conftest` works or fails depending on which folder pytest put on sys.path first, and can load a second
    copy of the module (its fixtures and state twice)."""
    tests = Path(__file__).resolve().parent
    helpers = {p.stem for p in tests.rglob("*.py") if not p.stem.startswith("test_")}
    bare = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bare += [f"{path.relative_to(tests)}:{node.lineno}: {n}" for n in names if n and n.split(".")[0] in helpers]
    assert not bare, "import test helpers as tests.<path>: " + "; ".join(bare)
