"""pipeline.launcher: a forked stage is the process `python -m` would start, running the code on disk."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from pipeline.launcher import run, stage_module, started

PROBE = '''
import os, sys, torch
import helper  # from the working directory, as `python -m` finds it
print("argv", sys.argv[1:], "cwd", os.getcwd(), "threads", torch.get_num_threads(), "env", os.environ.get("PROBE"))
print("version", helper.VERSION, file=sys.stderr)
torch.manual_seed(0)
weights = torch.randn(64, 64, requires_grad=True)
(weights @ weights).sum().backward()  # an OpenMP region in the forked child
raise SystemExit(int(sys.argv[1]))
'''


def launched(path: str, *, module: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run through the launcher; (exit status, stdout, stderr)."""
    (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
    output = {}

    def read(fd: int, key: str) -> None:
        with os.fdopen(fd) as stream:
            output[key] = stream.read()

    readers = [threading.Thread(target=read, args=(out_read, "out")), threading.Thread(target=read, args=(err_read, "err"))]
    for reader in readers:
        reader.start()
    status = run(path, module=module, args=args, cwd=str(cwd), env=env, stdout=out_write, stderr=err_write)
    for reader in readers:
        reader.join()
    return status, output["out"], output["err"]


@pytest.fixture(scope="module")
def launcher():
    with started() as path:
        yield path


def test_a_forked_stage_gets_its_cwd_argv_environment_threads_and_exit_status(launcher, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "helper.py").write_text("VERSION = 1\n")
    for status, threads in ((0, 1), (3, 2)):
        env = dict(os.environ, PROBE="yes", OMP_NUM_THREADS=str(threads))
        code, out, err = launched(launcher, module="probe", args=[str(status)], cwd=tmp_path, env=env)
        assert code == status, err
        assert out == f"argv ['{status}'] cwd {tmp_path} threads {threads} env yes\n"
        assert err == "version 1\n"


def test_a_forked_stage_runs_the_code_on_disk_now(launcher, tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    for version in (1, 2):  # the module changes between two stages of one launcher
        (tmp_path / "helper.py").write_text(f"VERSION = {version}\n")
        _, _, err = launched(launcher, module="probe", args=["0"], cwd=tmp_path, env=dict(os.environ))
        assert err == f"version {version}\n"


def test_capflow_comes_from_the_stage_working_directory(launcher, tmp_path):
    # a project copy (tests' make_project) imports its own pipeline package, not the launcher's
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "__init__.py").write_text("")
    (tmp_path / "pipeline" / "where.py").write_text("import pipeline, sys\nprint(pipeline.__file__)\n")
    code, out, err = launched(launcher, module="pipeline.where", args=[], cwd=tmp_path, env=dict(os.environ))
    assert code == 0, err
    assert out.strip() == str(tmp_path / "pipeline" / "__init__.py")


def test_an_exception_exits_1_with_its_traceback(launcher, tmp_path):
    (tmp_path / "broken.py").write_text("raise ValueError('row 7: empty text')\n")
    code, _, err = launched(launcher, module="broken", args=[], cwd=tmp_path, env=dict(os.environ))
    assert code == 1 and err.startswith("Traceback") and err.strip().endswith("ValueError: row 7: empty text")


def test_only_python_m_of_this_interpreter_goes_to_the_launcher():
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    assert stage_module("python -m stages.train banking77 k5-seed0 baseline 0", path=path) == (
        "stages.train", ["banking77", "k5-seed0", "baseline", "0"])
    assert stage_module("python -m stages.report > log.txt", path=path) is None
    for shell in ("python -m stages.report >log.txt", "python -m stages.report 2>&1", "python -m stages.x $HOME",
                  "python -m stages.x a|tee b", "python -m stages.x *.json"):
        assert stage_module(shell, path=path) is None, shell
    assert stage_module("python stages/report.py", path=path) is None
    assert stage_module("python -m stages.report", path="/nonexistent") is None
