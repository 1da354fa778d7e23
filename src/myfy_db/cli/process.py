"""The life of a ``myfy-db`` process: start-up without the cyclic GC, and a direct exit.

Two costs of a short command have nothing to do with its work, and both are avoided here:

- **Start-up.** A command imports Typer, pydantic, SQLAlchemy and a driver: hundreds of
  thousands of long-lived objects and next to no garbage cycles. The cyclic garbage
  collector would walk that growing heap again and again while it loads, so it is paused
  from the first line until :func:`resume_gc`, which open-ended work (the shell's user code
  and REPL, a load test, migration scripts) calls first. Objects from start-up are then
  frozen into the permanent generation, so later collections do not walk them again.
- **Exit.** After the command has finished, its output is flushed and the ``atexit``
  handlers have run, the interpreter would still tear down every module and object one by
  one before the process ends; with SQLAlchemy and pydantic loaded that takes longer than
  most commands' own work, and the operating system frees it all at once. So the process
  exits directly with the command's exit code.

Both apply only to the console script (``myfy-db``, ``python -m myfy_db``): a program or a
test that calls the Typer ``app`` in-process keeps its collector and its shutdown as they are.
``tests/benchmarks`` measures what each saves.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from contextlib import suppress

_state = {"gc_paused": False}


def pause_gc() -> None:
    """Stop cyclic garbage collection for the start-up of this process."""
    if gc.isenabled():
        gc.disable()
        _state["gc_paused"] = True


def resume_gc() -> None:
    """Restart cyclic garbage collection before open-ended work (a no-op unless paused).

    What start-up built is frozen first: it lives as long as the process, and collections
    that skip it stay as cheap as in a process that had imported nothing.
    """
    if _state["gc_paused"]:
        _state["gc_paused"] = False
        gc.freeze()
        gc.enable()


def run_console_script() -> None:
    """Run the command line given in ``sys.argv`` and end the process with its exit code."""
    pause_gc()
    from myfy_db.cli.application import app

    try:
        app()  # Typer's standalone mode ends every run, success included, in SystemExit
        status = 0
    except SystemExit as done:
        status = _exit_status(done.code)
    _exit(status)


def _exit_status(code: object) -> int:
    """The process exit status for ``SystemExit(code)``, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit(status: int) -> None:
    """Run the ``atexit`` handlers, flush the standard streams and end the process now."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a reader that went away (`| head`) or a closed stream: nothing left to deliver
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status & 0xFF)  # as the interpreter would: sys.exit(-1) ends with 255
