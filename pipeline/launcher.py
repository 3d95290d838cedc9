"""Start stage commands by fork from a process that has imported the heavy libraries once.

A stage is a fresh `python -m stages.<name>` process, and 4-8 s of its 10-50 s go to importing
torch, transformers, captum and scipy: at the default run's 77 stages, minutes of its 2 cores
(``bench/stage_launch.py``). The flow's thread runner therefore starts one launcher per run, a
single-threaded process that imports those third-party libraries and then forks one child per stage
command it is sent. The child is what `python -m` would have started: its own process, working
directory, environment, ``sys.argv``, ``sys.path[0]`` (the working directory), OpenMP threads, and
stdout and stderr on the caller's pipes; its exit status comes back over the connection. capflow's
own modules are never imported by the launcher, so a stage always runs the code on disk when it
starts, as DVC assumes when it hashes the stage's deps.

Protocol: one Unix SOCK_SEQPACKET connection per command; the caller sends one JSON message
(module, args, cwd, env) with two file descriptors (stdout, stderr) and reads back one message, the
exit status as text. The launcher exits when its stdin closes (the flow ended or was killed).
Linux only (:data:`AVAILABLE`); elsewhere the flow starts every command through /bin/sh.
"""

from __future__ import annotations

import json
import os
import runpy
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import CapflowError

# what the stages import from outside capflow (torch's model classes load lazily: BERT's is the students')
PRELOAD = ("numpy", "polars", "pydantic", "typer", "yaml", "scipy.stats", "sklearn.linear_model", "torch",
           "transformers", "transformers.models.bert.modeling_bert", "captum.attr")
# Unix SOCK_SEQPACKET sockets, and fork after importing torch, are Linux's (macOS has neither safely)
AVAILABLE = sys.platform == "linux"
_SHELL = set("();<>|&$`*?[~")
_MESSAGE = 1 << 20  # bytes: the environment of a request fits many times
_START_TIMEOUT_S = 300  # the imports take 5-10 s alone, minutes beside a busy flow


class LauncherError(CapflowError):
    """The launcher did not start, or stopped."""


def stage_module(command: str, *, path: str) -> tuple[str, list[str]] | None:
    """The module and arguments of a `python -m <module> ...` command whose ``python`` on ``path`` is this
    interpreter; None for any other command (it runs through /bin/sh as before)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)  # operators (|, >, &&, ;) become words
    lexer.whitespace_split = True
    words = list(lexer)
    # anything /bin/sh would do besides splitting words (redirect, pipe, expansion, glob) stays with the shell
    if len(words) < 3 or words[:2] != ["python", "-m"] or any(set(word) & _SHELL for word in words):
        return None
    python = shutil.which("python", path=path)
    if python is None or not os.path.samefile(python, sys.executable):
        return None
    return words[2], words[3:]


def _run_child(connection: socket.socket, request: dict, stdout: int, stderr: int) -> None:
    """In the forked child: become `python -m <module> <args>` and report its exit status; never returns."""
    status = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        os.close(stdout)
        os.close(stderr)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["cwd"]
        # the launcher's own package came from where it started: the stage imports capflow from its cwd
        for name in [name for name in sys.modules if name == "pipeline" or name.startswith("pipeline.")]:
            del sys.modules[name]
        if "OMP_NUM_THREADS" in os.environ:  # read by torch at import, i.e. in the launcher
            import torch

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        sys.argv = ["", *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                status = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - as the interpreter would: print it, exit 1
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        connection.send(str(status).encode())
    finally:
        os._exit(status)


def serve(path: str) -> None:
    """Import :data:`PRELOAD`, then listen on the Unix socket ``path`` and fork a child per request."""
    for name in PRELOAD:
        __import__(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable:  # EOF: whoever started the launcher is gone
            break
        connection, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(connection, _MESSAGE, 2)
        if os.fork() == 0:
            listener.close()
            _run_child(connection, json.loads(message), *fds)
        connection.close()
        for fd in fds:
            os.close(fd)
    listener.close()
    Path(path).unlink(missing_ok=True)


@contextmanager
def started() -> Iterator[str]:
    """A launcher for the duration of the context: yields its socket's path (it may still be importing).

    The launcher's stderr is the caller's, so an import that fails there is seen; its stdin is a pipe
    closed at exit, which ends it even when the caller is killed.
    """
    folder = tempfile.mkdtemp(prefix="capflow-launcher-")  # short: a socket path has at most 107 bytes
    path = os.path.join(folder, "socket")
    process = subprocess.Popen([sys.executable, "-m", "pipeline.launcher", path], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
    try:
        yield path
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _connect(path: str) -> socket.socket:
    """A connection to the launcher at ``path``, waiting while it starts."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            connection.connect(path)
            return connection
        except (FileNotFoundError, ConnectionRefusedError):
            connection.close()
            if time.monotonic() > deadline:
                raise LauncherError(f"no stage launcher at {path} after {_START_TIMEOUT_S} s "
                                    "(its error, if any, is on the flow's stderr)") from None
            time.sleep(0.1)


def run(path: str, *, module: str, args: list[str], cwd: str, env: dict[str, str], stdout: int, stderr: int) -> int:
    """Run ``python -m module args`` as a child of the launcher listening at ``path``.

    Args:
        path: the launcher's socket.
        module, args: what follows ``python -m``.
        cwd: the working directory (also ``sys.path[0]``).
        env: the whole environment of the child.
        stdout, stderr: file descriptors the child writes to, closed here once sent (so a reader of their
            pipes sees the end when the child exits).

    Returns:
        The child's exit status; -1 when it died without reporting one (e.g. killed by a signal).
    """
    with _connect(path) as connection:
        request = json.dumps({"module": module, "args": args, "cwd": cwd, "env": env}).encode()
        socket.send_fds(connection, [request], [stdout, stderr])
        os.close(stdout)
        os.close(stderr)
        reply = connection.recv(64)
    return int(reply) if reply else -1


if __name__ == "__main__":
    serve(sys.argv[1])
