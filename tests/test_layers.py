"""pipeline/ by concern: the layers below, declared once, point one way, and no modules import each other round.

A module may import its own layer and the layers before it, never a later one. Every import counts:
top-level, function-local and ``TYPE_CHECKING`` ones alike (a deferred import is still a dependency).
pipeline/'s top level holds only the core modules and the flow; every other module lives in the
subpackage of its concern.
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

CORE = ("errors", "io", "artifacts", "progress", "prompts", "prior_sources", "params", "models", "cli")
LAYERS = (  # lowest first: (name, its packages or modules)
    ("core", tuple(f"pipeline.{name}" for name in CORE)),
    ("attribution", ("pipeline.attribution",)),
    ("data", ("pipeline.data",)),
    ("llm", ("pipeline.llm",)),
    ("priors", ("pipeline.priors",)),
    ("training", ("pipeline.training",)),
    ("evaluation", ("pipeline.evaluation",)),
    ("reporting", ("pipeline.reporting",)),
    ("flow", ("pipeline.launcher", "pipeline.flow")),  # the launcher starts the flow's stage processes
)
FLOW = ("launcher", "flow")


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module below ``root``/pipeline (a package by its __init__.py)."""
    found = {}
    for path in sorted((root / "pipeline").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (``from a import b``: a.b where that is a module)."""
    known = modules(root)
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def layer(module: str) -> int:
    """The index in ``LAYERS`` of the layer that holds ``module`` (the package root ``pipeline``: the core's)."""
    if module == "pipeline":
        return 0
    for index, (_, members) in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: put it in its concern's subpackage")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} ({LAYERS[layer(src)][0]}) imports {dst} ({LAYERS[layer(dst)][0]})"
        for src, targets in graph.items() for dst in targets if layer(dst) > layer(src)
    )


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle():
    found = cycle(imports(REPO))
    assert found is None, "import cycle: " + " -> ".join(found)


def test_no_layer_imports_a_later_one():
    assert upward_imports(imports(REPO)) == []


def test_top_level_holds_only_the_core_and_the_flow():
    top = {p.stem for p in (REPO / "pipeline").glob("*.py")} - {"__init__"}
    assert top == {*CORE, *FLOW}
    packages = {p.parent.name for p in (REPO / "pipeline").glob("*/__init__.py")}
    assert {f"pipeline.{name}" for name in packages} == {m for _, members in LAYERS[1:-1] for m in members}


def test_every_subpackage_says_what_it_owns():
    for init in (REPO / "pipeline").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 200, f"{init.relative_to(REPO)}: a docstring saying what the package owns"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"errors.py": "", "data/decoy.py": "from pipeline.training.training import x",
          "training/training.py": ""}, "upward"),
        ({"errors.py": "", "data/decoy.py": "def f():\n    from pipeline.llm import base",
          "llm/base.py": ""}, "upward"),
        ({"errors.py": "", "llm/base.py": "def f():\n    from pipeline.llm.openai_backend import S",
          "llm/openai_backend.py": "from pipeline.llm.base import Scorer"}, "cycle"),
        ({"errors.py": "", "llm/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import cache",
          "llm/cache.py": "from pipeline.llm import base"}, "cycle"),
        ({"errors.py": "", "llm/cache.py": "from pipeline.llm.base import S\nfrom pipeline.errors import E",
          "llm/base.py": "from pipeline.data.perturb import p", "data/perturb.py": ""}, None),
    ],
    ids=["upward", "upward-local", "cycle-local", "cycle-relative-type-checking", "clean"],
)
def test_the_checks_catch_what_they_claim(tmp_path, files, expected):
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "pipeline" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    graph = imports(tmp_path)
    assert bool(upward_imports(graph)) == (expected == "upward")
    assert (cycle(graph) is not None) == (expected == "cycle")
