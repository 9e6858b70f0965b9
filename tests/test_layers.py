"""The package graph runs one way: each package imports only the packages below it, and no modules import each other
in a loop. Every import counts, at module level or inside a function, so a lazy import cannot hide an upward one."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The floors, lowest first. A module may import its own package and the packages on lower floors only.
LAYERS: list[set[str]] = [
    {"core"}, {"equivariant", "pde"}, {"samplers", "crystals", "causal"}, {"envs"}, {"agents"}, {"runner"},
    {"train", "benchmarks"},
]  # fmt: skip
FLOOR = {package: floor for floor, packages in enumerate(LAYERS) for package in packages}
#: The floors inside a package that has them, lowest first (modules not named stand outside the inner layering).
INNER_LAYERS: dict[str, list[set[str]]] = {
    "agents": [{"agents.common"}, {"agents.dqs", "agents.merlin", "agents.equivariant"}],
    "runner": [{"runner.args", "runner.registry", "runner.hyperparams"}, {"runner.kinds"}, {"runner.experiment"},
               {"runner.sweep"}],
}  # fmt: skip


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the layered packages under ``root``."""
    modules: dict[str, Path] = {}
    for package in FLOOR:
        single = root / f"{package}.py"
        if single.is_file():
            modules[package] = single
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imported_modules(name, path, modules) - {name} for name, path in modules.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import of a package on the same or a higher floor (other than its own)."""
    bad = []
    for importer, targets in graph.items():
        own = importer.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != own and FLOOR[other] >= FLOOR[own]:
                bad.append(f"{importer} -> {target}")
    return bad


def inner_upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import, inside a package of `INNER_LAYERS`, of a part of that package on the
    same or a higher inner floor (other than its own part)."""

    def part(module: str, package: str) -> tuple[str, int] | None:
        for floor, parts in enumerate(INNER_LAYERS[package]):
            for name in parts:
                if module == name or module.startswith(name + "."):
                    return name, floor
        return None

    bad = []
    for importer, targets in graph.items():
        package = importer.split(".")[0]
        if package not in INNER_LAYERS or (own := part(importer, package)) is None:
            continue
        for target in sorted(targets):
            other = part(target, package) if target.split(".")[0] == package else None
            if other is not None and other[0] != own[0] and other[1] >= own[1]:
                bad.append(f"{importer} -> {target}")
    return bad


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_package_imports_only_the_floors_below_it():
    graph = import_graph(ROOT)
    assert {"core.io", "equivariant.egnn", "pde.solver", "samplers.idem", "envs.registry", "agents.dqs.dqs",
            "runner.kinds.online", "train"} <= set(graph)  # fmt: skip
    assert upward_imports(graph) == []


def test_every_part_of_a_layered_package_imports_only_the_parts_below_it():
    graph = import_graph(ROOT)
    parts = {name for floors in INNER_LAYERS.values() for floor in floors for name in floor}
    assert all(any(module == name or module.startswith(name + ".") for module in graph) for name in parts)
    assert inner_upward_imports(graph) == []


def test_no_modules_import_each_other_in_a_loop():
    assert import_cycles(import_graph(ROOT)) == []


def test_the_checks_catch_an_upward_import_and_a_loop(tmp_path):
    files = {
        "core/__init__.py": "",
        "core/io.py": "def helper():\n    from samplers import energies  # lazy, and upward\n",
        "samplers/__init__.py": "from . import energies\n",
        "samplers/energies.py": "from samplers.metrics import score\n",
        "samplers/metrics.py": "import samplers.energies\nscore = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["samplers"] == {"samplers.energies"}
    assert upward_imports(graph) == ["core.io -> samplers.energies"]
    assert import_cycles(graph) == [["samplers.energies", "samplers.metrics"]]
