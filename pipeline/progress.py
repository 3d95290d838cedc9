"""How far a long loop is: a tqdm bar on a terminal, plain periodic lines on stderr otherwise.

The flow (pipeline/flow.py) and `dvc repro` read a stage's stderr through a pipe, where a bar's
carriage returns would arrive as one line when the stage ends; there a line every ``INTERVAL_S``
says units done of total and the rate, and the flow logs each one as it comes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

INTERVAL_S = 30.0  # the longest a long stage stays silent in the flow's log


@contextmanager
def progress(*, total: int, desc: str, unit: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Report a loop of ``total`` units; yields ``update(n)``, called as n more units are done.

    Args:
        total: the units the loop will do.
        desc: what the loop does ("training", "attribution").
        unit: what one unit is ("steps", "sentences").
        enabled: False says nothing (an inner loop whose caller reports).

    Returns:
        A context manager yielding ``update``. Off a terminal a loop shorter than ``INTERVAL_S``
        prints nothing; a longer one prints a line every ``INTERVAL_S`` and one when it ends.
    """
    if enabled and sys.stderr.isatty():
        with tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True) as bar:
            yield bar.update
        return
    start = last = time.perf_counter()
    done = 0

    def line(now: float) -> None:
        seconds = now - start
        print(f"{desc}: {done}/{total} {unit} ({100 * done / max(total, 1):.0f}%) in {seconds:.0f} s, "
              f"{done / max(seconds, 1e-9):.2f} {unit}/s", file=sys.stderr, flush=True)

    def update(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.perf_counter()
        if enabled and now - last >= INTERVAL_S:
            line(now)
            last = now

    yield update
    if last > start:  # it spoke while running: say that it finished
        line(time.perf_counter())
