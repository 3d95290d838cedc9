"""dvc.yaml's deps cover every project module each stage imports, transitively: a code change can never leave a stale stage."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.params import compose_params
from tests.conftest import REPO


def _module_files(name: str) -> list[Path]:
    """The project files that importing dotted ``name`` runs: each package's __init__ on the way, then the module."""
    parts = name.split(".")
    files = []
    for end in range(1, len(parts) + 1):
        base = REPO.joinpath(*parts[:end])
        files += [c for c in (base.with_suffix(".py"), base / "__init__.py") if c.is_file()]
    return files


def _imported_files(module: str) -> set[Path]:
    """Project files (pipeline/, stages/) that ``python -m <module>`` runs, transitively."""
    seen: set[Path] = set()
    todo = _module_files(module)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            todo += [f for name in names if name.split(".")[0] in ("pipeline", "stages") for f in _module_files(name)]
    return {p.relative_to(REPO) for p in seen}


def _stages() -> list[tuple[str, str, list[str]]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]  # "python -m stages.<name> ..."
        out.append((name, module, [str(d) for d in body.get("deps", [])]))
    return out


@pytest.mark.parametrize(("stage", "module", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_cover_every_imported_project_file(stage, module, deps):
    imported = _imported_files(module)
    missing = sorted(str(f) for f in imported if not any(str(f) == d or str(f).startswith(d.rstrip("/") + "/") for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not list them in its deps"


@pytest.mark.parametrize(("stage", "module", "deps"), _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_list_no_project_code_the_stage_does_not_run(stage, module, deps):
    """A listed module the stage never imports would rerun it for nothing when that module changes."""
    imported = {str(f) for f in _imported_files(module)}
    code = [d for d in deps if d.split("/")[0] in ("pipeline", "stages")]
    unused = [d for d in code if not any(f == d or f.startswith(d.rstrip("/") + "/") for f in imported)]
    assert not unused, f"dvc.yaml stage {stage!r} lists {unused} in its deps but never imports them"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (REPO / "conf" / "profile").glob("*.yaml")))
def test_every_profile_expands_dvc_yaml_into_a_graph(profile, tmp_path):
    """dvc.yaml interpolates params keys (an empty list of prior datasets must give no prior stages, not an error)."""
    from dvc.repo import Repo

    shutil.copy(REPO / "dvc.yaml", tmp_path)
    (tmp_path / "params.yaml").write_text(compose_params([f"profile={profile}"], conf_dir=REPO / "conf"), encoding="utf-8")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path))
    with Repo(str(tmp_path)) as repo:
        groups = {stage.name.split("@")[0] for stage in repo.index.stages}
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert {"data", "fewshot", "train", "evaluate", "report"} <= groups
    assert ("score" in groups) == bool(params["experiment"].get("prior_datasets"))
