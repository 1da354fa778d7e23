"""The life of a ``myfy-db`` process: start-up without the cyclic GC, and a direct exit.

Two costs of a short command have nothing to do with its work, and the console script
avoids both:

- **Start-up.** A command imports Typer, pydantic, SQLAlchemy and a driver: hundreds of
  thousands of long-lived objects and next to no garbage cycles. The cyclic garbage
  collector would walk that growing heap again and again while it loads, so it is paused
  from the first line until :func:`resume_gc`, which :func:`myfy_db.cli.runtime.load` calls
  once the settings are loaded: everything after that (the user's metadata module,
  migration scripts, the shell's code, a check or a load test of any length) runs with the
  collector on. What start-up built is frozen first, so collections do not walk it again.
- **Exit.** Once the command has finished, the ``atexit`` handlers have run and the output
  is flushed, the interpreter would still tear down every module and object one by one, and
  with SQLAlchemy and pydantic loaded that takes longer than most commands' own work. The
  operating system frees it all at once, so the process exits directly with the command's
  exit code. It does not when user code may own something that only the interpreter's own
  shutdown finishes: after the shell has run the user's code (files it left open are
  flushed as their objects go), or while a non-daemon thread is still running (the
  interpreter waits for it).

This is the console script only (``myfy-db``, ``python -m myfy_db``): a program or a test
that calls :func:`myfy_db.cli.main` or the Typer ``app`` keeps its collector and its
shutdown as they are. ``tests/benchmarks/bench_process.py`` measures what it saves.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import suppress

from myfy_db.cli.lifecycle import exit_now, pause_gc, user_code_ran
from myfy_db.errors import system_exit_status


def run_console_script() -> None:
    """Run the command line given in ``sys.argv`` and end the process with its exit code."""
    _end_on_signals()
    pause_gc()
    from myfy_db.cli.application import app_for

    try:
        # Typer's standalone mode ends every run, success included, in SystemExit.
        app_for(sys.argv[1:])()
        status = 0
    except SystemExit as done:
        if user_code_ran() or _other_threads_running():
            raise
        status = system_exit_status(done.code)
    exit_now(status)


def _end_on_signals() -> None:
    """Until a command runs, SIGINT and SIGTERM end the process at once, with one line and
    exit 130 or 143: start-up and parsing hold nothing to clean up, and a ``KeyboardInterrupt``
    there would end in a traceback or Click's "Aborted!" (exit 1). Each command's run
    installs its own handlers (:mod:`myfy_db.cli.signals`) and restores these afterwards.
    """
    import signal

    def end(signum: int, _frame: object) -> None:
        terminated = signum == signal.SIGTERM
        line = "Error: terminated (SIGTERM)\n" if terminated else "Error: interrupted (SIGINT)\n"
        with suppress(OSError):
            os.write(2, line.encode())
        os._exit(143 if terminated else 130)

    signal.signal(signal.SIGINT, end)
    signal.signal(signal.SIGTERM, end)


def _other_threads_running() -> bool:
    """True while a non-daemon thread other than this one runs: the interpreter waits for it."""
    current = threading.current_thread()
    return any(t is not current and not t.daemon and t.is_alive() for t in threading.enumerate())
