"""What every stage CLI shares: parameters loaded and validated first, errors printed on one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer

from pipeline.errors import CapflowError


def stage_app(main: Callable[..., None]) -> Callable[[], None]:
    """Wrap a stage's ``main`` as a typer command that turns CapflowError into one line and exit 2."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(main)

    def run() -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        if "transformers" in sys.modules:  # its load reports and weight-loading bars drown the stage's own lines
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
        try:
            app(standalone_mode=False)
        except CapflowError as error:
            print(f"capflow: error: {error}", file=sys.stderr)
            sys.exit(2)
        except Exception as error:  # click's own usage errors
            if type(error).__module__.startswith("click"):
                print(f"capflow: usage: {error}", file=sys.stderr)
                sys.exit(2)
            raise

    return run
