"""The Prefect flow: the stage graph of dvc.yaml, run like `dvc repro` with independent stages in parallel.

DVC stays the one description of the graph and the one record of what is up to date. The flow
reads the graph through DVC's API and takes up each stage as soon as all its upstream stages are
done (no waves: a slow stage holds back only its own downstream). Under DVC's repository lock it

1. checks whether DVC reports the stage changed (after its upstream was recorded, so a rerun
   upstream stage with identical outputs leaves its dependents alone, as in `dvc repro`);
2. if so, removes its outputs, as `dvc repro` does, so no stale file survives in a directory
   output, and restores them instead of running it where DVC's run cache holds this exact run;

then, without the lock, runs the command of a changed stage as a Prefect task, concurrently with
every other stage that is ready, and records it the moment it finishes as `dvc commit` does: its
outputs into DVC's cache and the run into DVC's run cache at once, and into dvc.lock in batches at
most a minute apart and when the flow ends (each write rereads and rewrites the whole lock file,
seconds of CPU at 77 stages). So a killed flow leaves every finished stage in the run cache and
the unfinished ones changed: the next run restores the first (step 2) and reruns only the rest. A
failed stage stops only its downstream; the rest of the graph goes on, and the flow then fails naming
the stage. After a flow run `dvc status` reports the stages up to date, and after `dvc repro` the flow finds nothing to do.

Stage commands run like DVC runs them: in the stage's working directory, with DVC_ROOT and
DVC_STAGE set, through /bin/sh, with the interpreter running the flow first on PATH (so
``python`` is the project's environment, as `make run` arranges with .venv/bin). On the thread
runner a `python -m <module>` command is forked instead from the run's launcher (``pipeline.launcher``),
which has imported torch and the other libraries once: the same process a shell would start, seconds
sooner.

How many stages run at once is params.yaml's ``resources`` (``pipeline.params.ResourcesParams``), the
one budget that `make run` and the Prefect deployment use too: at most ``gpu_stages`` stages that run a
model (:func:`needs_gpu`: dvc.yaml gives them a ``device`` or ``scoring`` parameter) and at most
``cpu_stages`` others; the flow submits no more than that, whatever the task runner.

Stage commands run on a task runner chosen per run: threads of the flow's process (``--runner
threads``, the default; the stages submitted together share the cores as their OpenMP threads,
unless ``OMP_NUM_THREADS`` is set) or Dask workers through prefect-dask's DaskTaskRunner (``--runner dask``,
on a temporary local cluster of ``--dask-workers`` processes or on a running scheduler's workers,
``--dask-address tcp://host:8786``). Stages that need a GPU also ask Dask for the worker resource
``GPU: 1``, so only a worker started with ``--resources GPU=1`` runs them, one at a time;
the local cluster's workers declare one GPU slot each, so those stages also run on a
machine without a GPU (on its CPU). The coordinator keeps DVC's contract: it alone decides what
to run and records results under DVC's lock; workers only run stage commands, in the same
checkout on a shared filesystem (same absolute path on every host). A worker checks that
assumption before each stage: it must see a marker file this run wrote in the checkout's
.dvc/tmp, or the stage fails with one line naming the path and the worker.

Run it locally with ``python -m pipeline.flow [--targets fewshot] ...`` (Prefect starts a
temporary server) or deploy it with prefect.yaml.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import IO, Literal
from uuid import uuid4

import dask
import distributed
import networkx as nx
import yaml
from dvc.dependency.param import ParamsDependency
from dvc.parsing import MatrixDefinition, split_group_name
from dvc.repo import Repo, lock_repo
from dvc.repo.reproduce import get_active_graph
from dvc.stage import PipelineStage
from dvc.stage.cache import RunCacheNotFoundError
from prefect import flow, get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from pipeline.errors import CapflowError, ConfigError
from pipeline.launcher import AVAILABLE as launcher_available
from pipeline.launcher import run as launch
from pipeline.launcher import stage_module, started
from pipeline.params import CONF_DIR, PARAMS_FILE, ResourcesParams, compose_params, load_params
from pipeline.training.students import objective_from_params

# Flow filter -> the dvc.yaml matrix item key it selects on.
_FILTER_KEYS = {"datasets": "dataset", "settings": "setting", "objectives": "objective", "priors": "prior", "seeds": "seed"}
# LLM scoring is the stage with transient failures (a shared GPU out of memory, a server timing out).
_RETRIES = {"score": 2}
_RETRY_DELAY_S = 30
# a stage that runs a model says where (``device``: torch) or with which LLM (``scoring.*``) in its dvc.yaml params
_MODEL_PARAMS = ("device", "scoring")
_GPU = {"GPU": 1}
_STDERR_TAIL = 20
# dvc.lock is reread and rewritten whole at each write (3-6 s of CPU at the default's 77 stages): finished
# stages are written in batches, at most this often; until then DVC's run cache holds them (see _run_graph)
_LOCK_INTERVAL_S = 60.0


class StageError(CapflowError):
    """A stage command exited non-zero; the message names the stage and holds its last stderr line."""


class CheckoutError(CapflowError):
    """A worker cannot see the coordinator's checkout; the message names the path and the worker."""


def check_profile(profile: str) -> None:
    """Refuse to run unless params.yaml holds ``profile``.

    DVC and every stage read params.yaml, so a profile is selected by composing it there
    (``make params PROFILE=paper``, which ``make run PROFILE=paper`` does, or ``dvc exp run -S profile=paper``);
    the flow never rewrites the tracked file itself, it checks.

    Args:
        profile: "params.yaml" (run whatever it holds) or the name of an overlay under conf/profile/ ("paper").

    Raises:
        ConfigError: no such overlay, or params.yaml is not its composition.
    """
    if profile == PARAMS_FILE.name:
        return
    if not (CONF_DIR / "profile" / f"{profile}.yaml").is_file():
        raise ConfigError(f"profile {profile!r}: no file {CONF_DIR / 'profile' / f'{profile}.yaml'}")
    held = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    if held != yaml.safe_load(compose_params([f"profile={profile}"])):
        raise ConfigError(
            f"{PARAMS_FILE} is not profile {profile!r}: select it with `make params PROFILE={profile}` "
            f"(or `make run PROFILE={profile}`), then run again"
        )


def stage_item(stage: PipelineStage) -> dict[str, str]:
    """The values a stage was expanded with: its matrix item, or {"dataset": key} for a foreach stage.

    dvc.yaml's foreach stages iterate over data.datasets, so their key is a dataset name; a stage
    outside foreach/matrix (a whole-experiment stage) has none.
    """
    group, key = split_group_name(stage.name)
    if key is None:
        return {}
    definition = stage.dvcfile.resolver.definitions[group]
    if isinstance(definition, MatrixDefinition):
        return {name: str(value) for name, value in definition.normalized_iterable[key].items()}
    return {"dataset": key}


def task_run_name(stage: PipelineStage) -> str:
    """A name that reads well in the UI, e.g. "guided · banking77_mini · k5-seed0 · guided · cap+ig · seed 0"."""
    values = (f"seed {value}" if name == "seed" else value for name, value in stage_item(stage).items())
    return " · ".join([split_group_name(stage.name)[0], *values])


def _matches_target(stage: PipelineStage, target: str) -> bool:
    # a full name, a group ("fewshot") or a partial key ("guided@banking77_mini")
    return stage.name == target or stage.name.startswith(target if "@" in target else f"{target}@")


def _upstream_closure(graph: nx.DiGraph, stages: Iterable[PipelineStage]) -> nx.DiGraph:
    # DVC's graph points from a stage to the stages it depends on
    nodes = set()
    for stage in stages:
        nodes |= nx.descendants(graph, stage) | {stage}
    return graph.subgraph(nodes)


def select_stages(
    graph: nx.DiGraph, *, targets: list[str] | None = None, filters: dict[str, list[str] | list[int] | None] | None = None
) -> nx.DiGraph:
    """The part of the stage graph a flow run covers: the selected stages and all their upstream.

    Args:
        graph: DVC's stage graph (edges from a stage to its upstream stages).
        targets: stage names, groups ("fewshot") or partial names ("guided@banking77_mini");
            None = every stage.
        filters: keys of ``_FILTER_KEYS`` (datasets, settings, objectives, priors, seeds) -> allowed
            values. A filter keeps the stages whose item has an allowed value for its key or lacks
            the key (so the prior-free students stay with a priors filter; an objectives filter
            selects the prior students by their objective too); a
            whole-experiment stage runs only without filters.

    Returns:
        The induced subgraph, closed under upstream.

    Raises:
        ConfigError: a target names no stage, or a filter value appears in no stage.
    """
    stages = list(graph)
    for target in targets or []:
        if not any(_matches_target(stage, target) for stage in stages):
            groups = sorted({split_group_name(stage.name)[0] for stage in stages})
            raise ConfigError(f"targets: {target!r} names no stage of dvc.yaml (groups: {', '.join(groups)})")
    if targets:
        stages = list(_upstream_closure(graph, (s for s in stages if any(_matches_target(s, t) for t in targets))))
    active = {_FILTER_KEYS[name]: (name, {str(v) for v in values}) for name, values in (filters or {}).items() if values}
    if not active:
        return graph.subgraph(stages)
    items = {stage: stage_item(stage) for stage in stages}
    for key, (name, allowed) in active.items():
        known = {item[key] for item in items.values() if key in item}
        unknown = sorted(allowed - known)
        if unknown:
            raise ConfigError(f"{name}: {unknown[0]!r} is in no selected stage of dvc.yaml (has: {', '.join(sorted(known))})")
    kept = [
        stage
        for stage, item in items.items()
        if item and all(item.get(key) in allowed for key, (_, allowed) in active.items() if key in item)
    ]
    return _upstream_closure(graph, kept)


def needs_gpu(stage: PipelineStage) -> bool:
    """Whether a stage runs a model, so takes one of ``resources.gpu_stages`` and a Dask worker's ``GPU`` slot.

    Read from the stage's params in dvc.yaml, the one description of the graph: a ``device`` or
    ``scoring`` key says it loads a torch model or the LLM.
    """
    keys = (key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params)
    return any(key.split(".")[0] in _MODEL_PARAMS for key in keys)


def _pump(stream: IO[str], log: Callable[[str], None], tail: deque[str]) -> None:
    for line in stream:
        line = line.rstrip("\n")
        log(line)
        tail.append(line)


def _stream(out: IO[str], err: IO[str], *, log: Callable[[str], None], stdout: deque[str], stderr: deque[str],
            wait: Callable[[], int]) -> int:
    """Log a running command's two pipes, keeping their tails, until ``wait`` returns its exit status."""
    # both pipes read at once, or a chatty stderr fills its buffer and blocks the stage
    readers = [threading.Thread(target=_pump, args=(stream, log, tail)) for stream, tail in ((out, stdout), (err, stderr))]
    for reader in readers:
        reader.start()
    returncode = wait()
    for reader in readers:
        reader.join()
    return returncode


def _worker_name() -> str:
    """This Dask worker's address and host, or the host alone in a thread of the flow's process."""
    try:
        return f"{distributed.get_worker().address} ({socket.gethostname()})"
    except ValueError:
        return socket.gethostname()


@contextmanager
def checkout_marker(repo: Repo) -> Iterator[str]:
    """A file in the checkout's .dvc/tmp that exists only during this flow run, removed at its end.

    A worker that sees it runs in the coordinator's checkout on a shared filesystem, not in a
    stale copy at the same path.

    Args:
        repo: the coordinator's DVC repository.

    Returns:
        A context manager yielding the marker's absolute path.
    """
    marker = Path(repo.tmp_dir).resolve() / f"capflow-flow-{uuid4().hex}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        yield str(marker)
    finally:
        marker.unlink(missing_ok=True)


@task(cache_policy=NO_CACHE)  # DVC decides what is up to date
def run_stage(*, name: str, commands: list[str], wdir: str, root: str, marker: str, threads: int | None = None,
              launcher: str | None = None) -> str:
    """Run a stage's commands like `dvc repro` does, streaming their output into the run's logs.

    Args:
        name: the stage's DVC name (exported as DVC_STAGE).
        commands: its cmd lines, run one after another through /bin/sh.
        wdir: the stage's working directory.
        root: the DVC repository root (exported as DVC_ROOT).
        marker: this flow run's :func:`checkout_marker`, which the worker must see.
        threads: the stage's OpenMP/MKL threads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``); None
            leaves the environment's.
        launcher: the socket of a :mod:`pipeline.launcher` on this machine, which starts `python -m`
            commands by fork with the libraries imported; None runs every command through /bin/sh.

    Returns:
        The last line the stage printed on stdout ("" if none).

    Raises:
        CheckoutError: this worker does not see the marker, so not the coordinator's checkout.
        StageError: a command exited non-zero; the message is the stage's last stderr line.
    """
    if not Path(marker).is_file():
        raise CheckoutError(
            f"worker {_worker_name()} cannot see the checkout {root} (no {marker}): workers must run stages "
            "in the coordinator's checkout, on a shared filesystem at the same path"
        )
    logger = get_run_logger()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "DVC_ROOT": root, "DVC_STAGE": name, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    stdout: deque[str] = deque(maxlen=1)
    stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
    start = time.perf_counter()
    for command in commands:
        logger.info("> %s", command)
        target = stage_module(command, path=env["PATH"]) if launcher else None
        if target:
            (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
            with os.fdopen(out_read) as out, os.fdopen(err_read) as err:
                wait = partial(launch, launcher, module=target[0], args=target[1], cwd=wdir, env=env,
                               stdout=out_write, stderr=err_write)
                returncode = _stream(out, err, log=logger.info, stdout=stdout, stderr=stderr, wait=wait)
        else:
            with subprocess.Popen(
                command, shell=True, cwd=wdir, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as process:
                returncode = _stream(process.stdout, process.stderr, log=logger.info, stdout=stdout, stderr=stderr,
                                     wait=process.wait)
        if returncode != 0:
            last = next((line for line in reversed(stderr) if line.strip()), "(no stderr)")
            raise StageError(f"stage {name} failed (exit {returncode}): {last}")
    result = stdout[-1] if stdout else ""
    logger.info("%s done in %.1f s: %s", name, time.perf_counter() - start, result)
    return result


def _remove_or_restore(repo: Repo, stage: PipelineStage) -> bool:
    """Remove the stage's outputs like `dvc repro`; restore them if DVC's run cache holds this exact run."""
    stage.remove_outs(ignore_remove=False, force=False)
    try:
        repo.stage_cache.restore(stage)
    except RunCacheNotFoundError:
        return False
    return True


def task_runner(
    *, runner: Literal["threads", "dask"], resources: ResourcesParams, dask_address: str | None, dask_workers: int | None
) -> TaskRunner:
    """The task runner that runs the stage commands, validated before any stage runs.

    Args:
        runner: "threads" (a pool in the flow's process) or "dask" (prefect-dask's DaskTaskRunner).
        resources: the stages at once; the thread pool holds them all (threads only).
        dask_address: a running Dask scheduler, e.g. "tcp://10.0.0.1:8786" (dask only); its workers
            run the stages, and those started with ``--resources GPU=1`` run the GPU stages.
        dask_workers: processes of a temporary local Dask cluster (dask without an address;
            default 2), one stage at a time each, each declaring one GPU slot and reporting to
            this run's Prefect API (else each would start a temporary server of its own).

    Returns:
        An unstarted task runner (enter it to start it).

    Raises:
        ConfigError: an option that does not fit the runner, or a size below 1; it names the option.
    """
    if runner == "threads":
        for option, value in (("dask_address", dask_address), ("dask_workers", dask_workers)):
            if value is not None:
                raise ConfigError(f"{option}: only with runner=dask (got {value!r} with runner=threads)")
        return ThreadPoolTaskRunner(max_workers=resources.gpu_stages + resources.cpu_stages)
    if dask_address is not None:
        if dask_workers is not None:
            raise ConfigError(f"dask_workers: sizes a local cluster, not one at dask_address {dask_address!r}; drop one")
        return DaskTaskRunner(address=dask_address)
    if dask_workers is not None and dask_workers < 1:
        raise ConfigError(f"dask_workers: must be at least 1 (got {dask_workers})")
    cluster = {
        "n_workers": dask_workers or 2, "threads_per_worker": 1, "resources": _GPU, "dashboard_address": None,
        "env": {"PREFECT_API_URL": str(get_client().api_url)},
    }
    return DaskTaskRunner(cluster_kwargs=cluster)


def threads_per_stage(stages: int, *, cores: int | None = None) -> int | None:
    """Each stage's share of this machine's cores when ``stages`` run at once on the thread runner.

    Two torch processes with a thread per core each oversubscribe the cores (a stage measured 7x
    slower); one thread each leaves a core idle when a stage runs alone. None when the environment
    fixes ``OMP_NUM_THREADS`` itself.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return None
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, stages))


def admit(ready: list[PipelineStage], running: list[PipelineStage], *, resources: ResourcesParams) -> list[PipelineStage]:
    """The ready stages to start now, in order, without more than ``resources`` allows of either kind at once."""
    free = {True: resources.gpu_stages, False: resources.cpu_stages}
    for stage in running:
        free[needs_gpu(stage)] -= 1
    admitted = []
    for stage in ready:
        if free[needs_gpu(stage)] > 0:
            free[needs_gpu(stage)] -= 1
            admitted.append(stage)
    return admitted


def _submit(stage: PipelineStage, *, runner: TaskRunner, root: str, marker: str, threads: int | None,
            launcher: str | None, done: queue.Queue[PipelineStage]):
    """Submit the stage's commands to ``runner`` (a GPU stage annotated for Dask); ``done`` gets it when it ends."""
    group = split_group_name(stage.name)[0]
    options = {"retries": _RETRIES[group], "retry_delay_seconds": _RETRY_DELAY_S} if group in _RETRIES else {}
    commands = stage.cmd if isinstance(stage.cmd, list) else stage.cmd.splitlines()
    # Dask's Client.submit reads the annotations in effect; the thread pool ignores them
    with dask.annotate(resources=_GPU) if needs_gpu(stage) else nullcontext():
        future = runner.submit(
            run_stage.with_options(name=group, task_run_name=task_run_name(stage), **options),
            {"name": stage.name, "commands": commands, "wdir": stage.wdir, "root": root, "marker": marker,
             "threads": threads, "launcher": launcher},
        )
    future.add_done_callback(lambda _: done.put(stage))
    return future


def _run_graph(graph: nx.DiGraph, *, repo: Repo, runner: TaskRunner, resources: ResourcesParams, marker: str,
               launcher: str | None, share_cores: bool, log: Callable[[str], None],
               ) -> tuple[dict[str, list[str]], list[BaseException]]:
    """Bring ``graph`` up to date, each stage taken up once its upstream is done (the module's steps 1 and 2).

    Args:
        graph: the selected stages (DVC's edges: from a stage to its upstream).
        repo: the DVC repository, locked only to decide and record.
        runner: runs the commands; at most ``resources`` allows run at once.
        resources: the stage budget.
        marker: this run's :func:`checkout_marker`.
        launcher: the socket of this run's :mod:`pipeline.launcher` (thread runner), or None.
        share_cores: give the stages started together a share of the cores (the thread runner).
        log: the flow's logger.

    Returns:
        (stage names by outcome, as :func:`capflow` returns them; the failed stages' errors, in the order they failed).
    """
    summary: dict[str, list[str]] = {"ran": [], "restored": [], "up_to_date": []}
    finished: set[PipelineStage] = set()
    ready: list[PipelineStage] = []
    running: list[PipelineStage] = []
    futures = {}
    errors: list[BaseException] = []
    done: queue.Queue[PipelineStage] = queue.Queue()
    unwritten: list[PipelineStage] = []  # recorded in DVC's caches, not yet in dvc.lock
    last_write = time.monotonic()

    def unblocked(stage: PipelineStage) -> list[PipelineStage]:
        # the downstream stages whose last unfinished upstream was ``stage``
        return sorted((d for d in graph.predecessors(stage) if all(u in finished for u in graph.successors(d))),
                      key=lambda d: d.name)

    def record(stage: PipelineStage) -> None:
        """What `dvc commit` does, but dvc.lock later: outputs into DVC's cache, the run into its run cache."""
        stage.save()  # hashes deps and outputs, and saves the run cache entry a killed flow's next run restores
        stage.commit()
        unwritten.append(stage)

    def write_lock(*, now: bool = False) -> None:
        nonlocal last_write
        if unwritten and (now or time.monotonic() - last_write >= _LOCK_INTERVAL_S):
            by_file: dict[str, list[PipelineStage]] = {}
            for stage in unwritten:
                by_file.setdefault(stage.dvcfile.path, []).append(stage)
            for stages in by_file.values():
                stages[0].dvcfile.dump_stages(stages, update_pipeline=False)
            unwritten.clear()
            last_write = time.monotonic()

    def take_up(stages: list[PipelineStage]) -> None:
        """Steps 1 and 2 for stages whose upstream is done, then for those that this leaves unblocked; under the lock."""
        todo = deque(stages)
        while todo:
            stage = todo.popleft()
            if stage.changed():
                if not _remove_or_restore(repo, stage):
                    ready.append(stage)
                    continue
                record(stage)
                summary["restored"].append(stage.name)
            else:
                summary["up_to_date"].append(stage.name)
            finished.add(stage)
            todo.extend(unblocked(stage))

    def start_admitted() -> None:
        start = admit(ready, running, resources=resources)
        # Dask workers size their own threads (one per worker process)
        threads = threads_per_stage(len(running) + len(start)) if share_cores else None
        for stage in start:
            ready.remove(stage)
            running.append(stage)
            futures[stage] = _submit(stage, runner=runner, root=repo.root_dir, marker=marker, threads=threads,
                                    launcher=launcher, done=done)
        if start:
            log(f"started {', '.join(stage.name for stage in start)}; {len(running)} running, {len(ready)} waiting")

    try:
        with lock_repo(repo):
            take_up(sorted((stage for stage in graph if not any(graph.successors(stage))), key=lambda stage: stage.name))
        while ready or running:
            start_admitted()
            stage = done.get()
            running.remove(stage)
            result = futures.pop(stage).result(raise_on_failure=False)
            if isinstance(result, BaseException):
                errors.append(result)  # its downstream never becomes unblocked
                continue
            start_admitted()  # refill the freed slot from what was ready before recording this stage
            with lock_repo(repo):
                record(stage)
                summary["ran"].append(stage.name)
                finished.add(stage)
                take_up(unblocked(stage))
                write_lock()
    finally:
        with lock_repo(repo):
            write_lock(now=True)
    return summary, errors


@flow(name="capflow")
def capflow(
    profile: str = "params.yaml",
    datasets: list[str] | None = None,
    settings: list[str] | None = None,
    objectives: list[str] | None = None,
    priors: list[str] | None = None,
    seeds: list[int] | None = None,
    targets: list[str] | None = None,
    runner: Literal["threads", "dask"] = "threads",
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, list[str]]:
    """Bring the selected part of dvc.yaml's graph up to date, independent stages concurrently.

    Args:
        profile: the profile params.yaml must hold: "params.yaml" (whatever it holds) or the name of an
            overlay under conf/profile/ ("paper"); see :func:`check_profile`.
        datasets: only stages of these datasets (None = all).
        settings: only these few-shot settings, e.g. ["k5-seed0", "full"].
        objectives: only these objectives (student.objectives and student.prior_objectives names).
        priors: only these priors (student.priors names); prior-free students stay.
        seeds: only these training seeds (student.seeds).
        targets: only these stages (names, groups like "fewshot", or "guided@banking77_mini")
            and their upstream.
        runner: "threads" (this process) or "dask" (Dask workers; GPU stages hold a GPU resource).
        dask_address: a running Dask scheduler whose workers run the stages (runner=dask).
        dask_workers: else the size of a temporary local Dask cluster (runner=dask; default 2).

    Returns:
        Stage names by outcome, in run order: "ran", "restored" (from DVC's run cache), "up_to_date".

    Raises:
        ConfigError: a bad profile, objective setting, target, filter or runner option, before any stage runs.
        StageError: a stage failed, or a worker cannot see the checkout (the first to fail, and how
            many more did); every other stage finished and was recorded, none downstream of a failure ran.
    """
    logger = get_run_logger()
    check_profile(profile)
    params = load_params()
    for name in params.student.objectives + params.student.prior_objectives:  # their settings, before any stage runs
        objective_from_params(params, name)
    resources = params.resources
    stage_runner = task_runner(runner=runner, resources=resources, dask_address=dask_address, dask_workers=dask_workers)
    filters = {"datasets": datasets, "settings": settings, "objectives": objectives, "priors": priors, "seeds": seeds}
    # the runner starts its Dask cluster or client at the first submission, not here
    # the thread runner's stages start from a launcher on this machine; Dask workers start their own processes
    with (Repo(".") as repo, stage_runner, checkout_marker(repo) as marker,
          started() if runner == "threads" and launcher_available else nullcontext() as launcher):
        with lock_repo(repo):
            graph = select_stages(get_active_graph(repo.index.graph), targets=targets, filters=filters)
        logger.info("%d stages selected", len(graph))
        summary, errors = _run_graph(graph, repo=repo, runner=stage_runner, resources=resources, marker=marker,
                                     launcher=launcher, share_cores=runner == "threads", log=logger.info)
    if errors:
        stopped = len(graph) - sum(map(len, summary.values())) - len(errors)
        logger.error("%d stages failed, %d downstream of them not run", len(errors), stopped)
        raise StageError(f"{errors[0]}{f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''}")
    logger.info("done: %d ran, %d restored, %d up to date", *map(len, summary.values()))
    return summary


def main() -> None:
    """Run the flow locally from the command line (a list option repeats: --targets data --targets fewshot)."""
    from pipeline.cli import stage_app

    stage_app(capflow)()


if __name__ == "__main__":
    main()
