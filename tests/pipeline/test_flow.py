"""pipeline/flow.py and prefect.yaml: the Prefect flow runs dvc.yaml's graph like `dvc repro`.

The flow runs against Prefect's temporary local server in fresh copies of the project (git + DVC):
the data stages of the default profile's banking77_mini, and the whole tiny profile, on threads and
on a local Dask cluster of 2 worker processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from dvc.repo import Repo
from dvc.stage import PipelineStage
from polars.testing import assert_frame_equal
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from pipeline.errors import ConfigError
from pipeline.flow import (
    CheckoutError,
    StageError,
    capflow,
    check_profile,
    needs_gpu,
    run_stage,
    select_stages,
    task_run_name,
    task_runner,
    threads_per_stage,
)
from pipeline.params import ResourcesParams, compose_params
from tests.conftest import REPO, dvc, edit_params, make_project

FEWSHOT = Path("data/fewshot/banking77_mini")


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    """Prefect's temporary server on a throw-away database, started once for the module (pyproject's start-up allowance)."""
    with prefect_test_harness(server_startup_timeout=None):
        yield


def _only_banking77_mini_k5_seed0(params: dict) -> None:
    params["data"]["datasets"] = {"banking77_mini": params["data"]["datasets"]["banking77_mini"]}
    params["experiment"]["datasets"] = params["experiment"]["prior_datasets"] = ["banking77_mini"]  # not the decoy control
    params["fewshot"]["seeds"] = [0]
    params["experiment"]["settings"] = ["k5-seed0"]
    params["experiment"]["extra_settings"] = []
    params["student"]["priors"] = ["cap+ig+lime", "oracle", "random", "ig", "lime", "cap", "ig+lime", "cap+ig", "cap+lime"]
    params["student"]["extra_priors"] = []
    params["student"]["seeds"] = [0]


@pytest.fixture
def project(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git + DVC copy of the default profile with only banking77_mini k5-seed0, as the working directory."""
    make_project(tmp_path, shared_data=shared_data, profile="default", edit=_only_banking77_mini_k5_seed0)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def names(stages: Iterable[PipelineStage]) -> list[str]:
    return sorted(stage.name for stage in stages)


def set_shots(k: int) -> Callable[[dict], None]:
    def edit(params: dict) -> None:
        params["fewshot"]["shots"] = [k]
        params["experiment"]["settings"] = [f"k{k}-seed0"]
        params["experiment"]["extra_settings"] = []

    return edit


@pytest.mark.slow
def test_flow_and_dvc_repro_agree_on_what_is_up_to_date(project: Path, prefect_server: None) -> None:
    first = capflow(targets=["fewshot"])
    assert first == {"ran": ["data@banking77_mini", "fewshot@banking77_mini"], "restored": [], "up_to_date": []}
    for split in ("train", "validation", "test"):
        assert (project / "data/datasets/banking77_mini" / f"{split}.parquet").is_file()
    k5 = pl.read_parquet(FEWSHOT / "k5-seed0.parquet")
    labels = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["data"]["datasets"]["banking77_mini"]["labels"]
    assert sorted(k5["label"].unique()) == sorted(labels)
    assert k5["label"].value_counts()["count"].to_list() == [5] * len(labels)

    # the flow recorded its runs in dvc.lock: DVC finds nothing to do
    with Repo(".") as repo:
        assert repo.status(targets=["fewshot"], with_deps=True) == {}
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro", "fewshot"], capture_output=True, text=True, check=True)
    assert "Running stage" not in repro.stdout
    assert "Stage 'fewshot@banking77_mini' didn't change" in repro.stdout
    assert "Data and pipelines are up to date" in repro.stdout
    again = capflow(targets=["fewshot"])
    assert again == {"ran": [], "restored": [], "up_to_date": ["data@banking77_mini", "fewshot@banking77_mini"]}

    # a new k reruns the k-shot stage only, and its directory loses the stale k=5 file, as under dvc repro
    edit_params(project, set_shots(3))
    changed = capflow(targets=["fewshot"])
    assert changed == {"ran": ["fewshot@banking77_mini"], "restored": [], "up_to_date": ["data@banking77_mini"]}
    assert sorted(path.name for path in FEWSHOT.iterdir()) == ["k3-seed0.parquet"]

    # back to k=5: DVC's run cache holds that run, so the flow restores it instead of rerunning
    edit_params(project, set_shots(5))
    assert capflow(targets=["fewshot"])["restored"] == ["fewshot@banking77_mini"]
    assert_frame_equal(pl.read_parquet(FEWSHOT / "k5-seed0.parquet"), k5)
    with Repo(".") as repo:
        assert repo.status(targets=["fewshot"], with_deps=True) == {}


def run_the_tiny_profile(project: Path, **runner: str) -> None:
    """Every stage of the tiny profile through the flow in ``project`` (the working directory) with
    the ``runner`` options; then DVC finds everything up to date and `dvc repro` has nothing to do."""
    result = capflow(**runner)
    with Repo(".") as repo:
        assert len(result["ran"]) == len(repo.index.graph)  # every stage of the graph, scoring to heatmaps
        assert repo.status() == {}
    metrics = project / "metrics" / "banking77_tiny" / "k2-seed0"
    assert sorted(p.name for p in metrics.iterdir()) == [
        "adversarial", "baseline-seed0.json", "guided.cap+ig+lime-seed0.json", "guided.cap-seed0.json",
        "guided.oracle-seed0.json", "guided.random-seed0.json", "teacher",
    ]
    assert "Data and pipelines are up to date." in dvc(project, "repro")


@pytest.fixture
def tiny_project(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the project running the tiny profile, as the working directory."""
    make_project(tmp_path, shared_data=shared_data, profile="tiny")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_the_whole_tiny_profile_through_the_flow_leaves_dvc_nothing_to_do(tiny_project: Path, prefect_server: None) -> None:
    run_the_tiny_profile(tiny_project)


class TaskResources(SchedulerPlugin):
    """Records, as the Dask scheduler receives each Prefect task, its stage name -> resource restrictions."""

    def __init__(self) -> None:
        self.by_stage: dict[str, dict[str, float] | None] = {}

    def update_graph(self, scheduler, *, keys, **kwargs) -> None:
        for key in keys:
            task = scheduler.tasks[key]
            self.by_stage[task.run_spec.kwargs["parameters"]["name"]] = task.resource_restrictions


@pytest.mark.slow
def test_the_tiny_profile_on_a_two_worker_dask_cluster_with_gpu_stages_holding_a_gpu(
    tiny_project: Path, prefect_server: None
) -> None:
    tasks = TaskResources()
    # what `dask scheduler` + `dask worker --resources GPU=1` on two hosts sharing the checkout set up
    workers = {"resources": {"GPU": 1}, "env": {"PREFECT_API_URL": PREFECT_API_URL.value()}}
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, **workers) as cluster:
        cluster.scheduler.add_plugin(tasks)
        run_the_tiny_profile(tiny_project, runner="dask", dask_address=cluster.scheduler_address)
    with Repo(".") as repo:
        assert sorted(tasks.by_stage) == sorted(stage.name for stage in repo.index.graph)
    gpu = {"score", "train", "ig_prior", "oracle_teacher", "controls", "diagnostics", "adversarial", "guided",
           "evaluate", "evaluate_guided", "attack", "attack_guided", "heatmaps"}  # the tiny profile has no *_extra stages
    for name, resources in tasks.by_stage.items():
        assert resources == ({"GPU": 1} if name.split("@")[0] in gpu else None), name


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["threads", "dask"])  # dask: a local cluster of 2 worker processes
def test_a_failing_stage_fails_the_flow_with_its_error_line(project: Path, prefect_server: None, runner: str) -> None:
    edit_params(project, lambda params: params["data"]["datasets"]["banking77_mini"].update(path="no_such_dataset"))
    stage = subprocess.run([sys.executable, "-m", "stages.data", "banking77_mini"], capture_output=True, text=True)
    assert stage.returncode == 2
    (error_line,) = stage.stderr.strip().splitlines()

    with pytest.raises(StageError) as failure:
        capflow(targets=["fewshot"], runner=runner)
    assert str(failure.value) == f"stage data@banking77_mini failed (exit 2): {error_line}"
    assert not Path("data/fewshot").exists()  # downstream never ran
    assert not Path("dvc.lock").exists()  # nothing recorded


def test_a_worker_that_cannot_see_the_checkout_fails_naming_the_path_and_the_worker(tmp_path: Path) -> None:
    elsewhere = tmp_path / "checkout"  # the coordinator's path, which this worker's filesystem lacks
    stage = {"name": "data@banking77_mini", "commands": ["true"], "wdir": str(elsewhere), "root": str(elsewhere),
             "marker": str(elsewhere / ".dvc/tmp/capflow-flow-0")}
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        (worker,) = cluster.scheduler_info["workers"]
        with pytest.raises(CheckoutError) as failure:
            client.submit(run_stage.fn, **stage).result()
    assert str(failure.value) == (
        f"worker {worker} ({socket.gethostname()}) cannot see the checkout {elsewhere} (no {stage['marker']}): "
        "workers must run stages in the coordinator's checkout, on a shared filesystem at the same path"
    )


def test_runner_options_are_checked_before_anything_runs() -> None:
    resources = ResourcesParams(gpu_stages=1, cpu_stages=2)
    with pytest.raises(ConfigError, match=r"^dask_address: only with runner=dask"):
        task_runner(runner="threads", resources=resources, dask_address="tcp://127.0.0.1:8786", dask_workers=None)
    with pytest.raises(ConfigError, match=r"^dask_workers: sizes a local cluster, not one at dask_address"):
        task_runner(runner="dask", resources=resources, dask_address="tcp://127.0.0.1:8786", dask_workers=2)
    with pytest.raises(ConfigError, match=r"^dask_workers: must be at least 1 \(got 0\)"):
        task_runner(runner="dask", resources=resources, dask_address=None, dask_workers=0)
    threads = task_runner(runner="threads", resources=resources, dask_address=None, dask_workers=None)
    assert threads._max_workers == 3  # room for every stage the budget lets run at once


FLAKY = """import pathlib, sys
out = pathlib.Path(sys.argv[1])
tries = pathlib.Path(f"{out}.tries")
tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
if len(tries.read_text()) == 1:
    sys.exit("capflow: error: transient failure")
out.write_text("ok")
"""


def fake_project(folder: Path, stages: dict[str, dict], *, edit: Callable[[dict], None] | None = None) -> None:
    """A git + DVC project in ``folder`` whose dvc.yaml holds ``stages`` and whose params.yaml is the default
    profile's (the flow reads its ``resources``) after ``edit``."""
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}), encoding="utf-8")
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    if edit is not None:
        edit_params(folder, edit)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    Repo.init(str(folder)).close()


@pytest.mark.slow
def test_only_scoring_is_retried(tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_project(tmp_path, {name: {"cmd": f"python flaky.py {name}.out", "outs": [f"{name}.out"]}
                            for name in ("score", "priors")})
    (tmp_path / "flaky.py").write_text(FLAKY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pipeline.flow._RETRY_DELAY_S", 0)

    assert capflow(targets=["score"])["ran"] == ["score"]
    assert Path("score.out.tries").read_text() == "xx"
    with pytest.raises(StageError, match=r"stage priors failed \(exit 1\): capflow: error: transient failure"):
        capflow(targets=["priors"])
    assert Path("priors.out.tries").read_text() == "x"


def test_selection_follows_the_dvc_graph(project: Path) -> None:
    with Repo(".") as repo:
        graph = repo.index.graph
        assert names(select_stages(graph, targets=["fewshot"])) == ["data@banking77_mini", "fewshot@banking77_mini"]
        assert len(select_stages(graph)) == len(graph)

        cap_ig = select_stages(graph, targets=["evaluate_guided"], filters={"priors": ["cap+ig"]})
        assert [name for name in names(cap_ig) if name.startswith(("guided@", "evaluate"))] == [
            "evaluate_guided@banking77_mini-k5-seed0-guided-cap+ig-0",
            "guided@banking77_mini-k5-seed0-guided-cap+ig-0",
        ]
        assert "train@banking77_mini-k5-seed0-baseline-0" in names(cap_ig)  # upstream: the IG prior's teacher

        # a priors filter keeps the prior-free students and drops the other priors (the heatmaps
        # stage is left out: it draws the CAP Hybrid student, so that one is its upstream)
        cap = names(select_stages(graph, targets=["evaluate", "evaluate_guided"], filters={"priors": ["cap"], "seeds": [0]}))
        assert "evaluate@banking77_mini-k5-seed0-baseline-0" in cap
        assert not any(name.startswith("guided@") and not name.endswith("-cap-0") for name in cap)

        assert names(stage for stage in cap_ig if not any(cap_ig.successors(stage))) == ["data@banking77_mini"]

        guided = next(stage for stage in graph if stage.name == "guided@banking77_mini-k5-seed0-guided-cap+ig-0")
        assert task_run_name(guided) == "guided · banking77_mini · k5-seed0 · guided · cap+ig · seed 0"

        with pytest.raises(ConfigError, match=r"targets: 'nope' names no stage"):
            select_stages(graph, targets=["nope"])
        with pytest.raises(ConfigError, match=r"datasets: 'clinc150' is in no selected stage"):
            select_stages(graph, filters={"datasets": ["clinc150"]})


def test_profile_must_be_what_params_yaml_holds(project: Path) -> None:
    check_profile("params.yaml")
    with pytest.raises(ConfigError, match=r"select it with `make params PROFILE=paper`"):
        check_profile("paper")
    (project / "params.yaml").write_text(compose_params(["profile=paper"]), encoding="utf-8")
    check_profile("paper")
    with pytest.raises(ConfigError, match=r"profile 'nope': no file conf/profile/nope.yaml"):
        check_profile("nope")


@pytest.mark.slow
def test_prefect_deploy_registers_the_scheduled_paper_run(project: Path, prefect_server: None) -> None:
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="gpu", type="process"))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    deploy = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], env=env, capture_output=True, text=True
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("capflow/paper")
    assert deployment.entrypoint == "pipeline/flow.py:capflow"
    assert deployment.work_pool_name == "gpu"
    assert deployment.parameters["profile"] == "paper"
    assert (REPO / "conf" / "profile" / f"{deployment.parameters['profile']}.yaml").is_file()
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(project.resolve())}}]


def test_stages_running_at_once_share_the_cores_unless_the_environment_fixes_the_threads(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads_per_stage(1, cores=2) == 2  # alone: every core
    assert threads_per_stage(2, cores=2) == 1
    assert threads_per_stage(3, cores=16) == 5
    assert threads_per_stage(3, cores=2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_stage(2, cores=2) is None


def test_the_projects_prefect_settings_hold_for_a_flow_started_in_the_checkout() -> None:
    """pyproject.toml's [tool.prefect]: the temporary server gets 120 s to start (20 s failed `make run` on busy cores)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    read = ("from prefect.settings import get_current_settings as s; "
            "print(s().server.ephemeral.startup_timeout_seconds, s().server.analytics_enabled)")
    shown = subprocess.run([sys.executable, "-c", read], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["120", "False"]


# a fake stage: its start and end (ns) in runs/<name>, 1.5 s apart
RECORD = "date +%s%N > runs/$DVC_STAGE && sleep 1.5 && date +%s%N >> runs/$DVC_STAGE && touch out/$DVC_STAGE"


def most_at_once(spans: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])  # an end before a start at a tie
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.parametrize(("gpu_stages", "cpu_stages"), [(1, 2), (2, 1)])
def test_the_flow_runs_no_more_stages_at_once_than_params_resources_allow(
    tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch, gpu_stages: int, cpu_stages: int
) -> None:
    # four stages that run a model (a `device` param, as dvc.yaml's training stages) and four that do not
    model = {f"model{i}": {"cmd": RECORD, "params": ["device"], "outs": [f"out/model{i}"]} for i in range(4)}
    other = {f"other{i}": {"cmd": RECORD, "outs": [f"out/other{i}"]} for i in range(4)}
    fake_project(tmp_path, model | other, edit=lambda raw: raw.update(resources={"gpu_stages": gpu_stages,
                                                                                  "cpu_stages": cpu_stages}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    with Repo(".") as repo:
        assert sorted(stage.name for stage in repo.index.stages if needs_gpu(stage)) == sorted(model)

    assert sorted(capflow()["ran"]) == sorted(model | other)
    spans = {path.name: tuple(map(int, path.read_text().split())) for path in Path("runs").iterdir()}
    assert most_at_once([spans[name] for name in model]) == gpu_stages
    assert most_at_once([spans[name] for name in other]) == cpu_stages



def chain_and_a_slow_branch(cmd: str = RECORD) -> dict[str, dict]:
    """first -> second, and an independent slow stage (3 s more) beside them."""
    return {
        "first": {"cmd": cmd, "outs": ["out/first"]},
        "second": {"cmd": cmd, "deps": ["out/first"], "outs": ["out/second"]},
        "slow": {"cmd": f"sleep 3 && {RECORD}", "outs": ["out/slow"]},
    }


@pytest.mark.slow
def test_a_stage_starts_when_its_own_upstream_is_done_not_when_a_wave_is(
    tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_project(tmp_path, chain_and_a_slow_branch(), edit=lambda raw: raw.update(resources={"gpu_stages": 1, "cpu_stages": 2}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)

    assert capflow()["ran"] == ["first", "second", "slow"]  # in the order they finished
    (first_start, first_end), (second_start, _), (_, slow_end) = (
        tuple(map(int, Path("runs", name).read_text().split())) for name in ("first", "second", "slow"))
    assert first_end <= second_start < slow_end  # in waves, second would have waited for slow


@pytest.mark.slow
def test_a_failed_stage_stops_its_downstream_only_and_a_rerun_resumes(
    tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = 'test -f fixed || { echo "capflow: error: first is broken" >&2; exit 2; }; ' + RECORD
    fake_project(tmp_path, chain_and_a_slow_branch(failing))
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)

    with pytest.raises(StageError) as failure:
        capflow()
    assert str(failure.value) == "stage first failed (exit 2): capflow: error: first is broken"
    assert sorted(path.name for path in Path("runs").iterdir()) == ["slow"]  # second never ran; slow did
    with Repo(".") as repo:
        assert sorted(repo.status()) == ["first", "second"]  # slow was recorded

    Path("fixed").touch()
    assert capflow() == {"ran": ["first", "second"], "restored": [], "up_to_date": ["slow"]}
    with Repo(".") as repo:
        assert repo.status() == {}


@pytest.mark.slow
def test_a_flow_killed_before_it_wrote_dvc_lock_restores_its_finished_stages_on_the_next_run(
    tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 between two dvc.lock writes: the finished stages are in the run cache, so the next run restores them."""
    stages = chain_and_a_slow_branch()
    stages["slow"]["cmd"] = f"test -f fast || sleep 600; {RECORD}"
    stages["first"]["deps"] = ["input"]  # DVC's run cache keeps only stages with a dependency (every stage of dvc.yaml)
    (tmp_path / "input").write_text("x")
    fake_project(tmp_path, stages, edit=lambda raw: raw.update(resources={"gpu_stages": 1, "cpu_stages": 2}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    script = "import pipeline.flow as f; f._LOCK_INTERVAL_S = 1e9; f.capflow()"  # dvc.lock only at the end
    flow = subprocess.Popen([sys.executable, "-c", script], env=os.environ | {
        "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs = tmp_path / ".dvc" / "cache" / "runs"
        for _ in range(1200):  # first and second recorded in the run cache, slow still sleeping
            if runs.is_dir() and len([p for p in runs.rglob("*") if p.is_file() and p.suffix != ".tmp"]) == 2:
                break
            assert flow.poll() is None, "the flow ended before it was killed"
            time.sleep(0.1)
        else:
            pytest.fail("the first two stages were not recorded in the run cache within 120 s")
    finally:
        os.killpg(flow.pid, 9)
        flow.wait()
    assert not Path("dvc.lock").exists()  # killed before its one write
    spans = {path.name: path.read_text() for path in Path("runs").iterdir()}
    assert sorted(spans) == ["first", "second"]  # slow was still sleeping

    Path("fast").touch()
    assert capflow() == {"ran": ["slow"], "restored": ["first", "second"], "up_to_date": []}
    assert all(Path("runs", name).read_text() == span for name, span in spans.items())  # restored, not rerun
    with Repo(".") as repo:
        assert repo.status() == {}
