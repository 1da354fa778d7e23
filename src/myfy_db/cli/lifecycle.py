"""The process's garbage collector and its direct exit (see :mod:`myfy_db.cli.process`).

A module of its own so that both the console script (:mod:`myfy_db.cli.process`) and the
command edge (:mod:`myfy_db.cli.runtime`) use it without importing each other.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from contextlib import suppress

_state = {"gc_paused": False, "user_code_ran": False}


def pause_gc() -> None:
    """Stop cyclic garbage collection for the start-up of this process."""
    if gc.isenabled():
        gc.disable()
        _state["gc_paused"] = True


def resume_gc() -> None:
    """Restart cyclic garbage collection: start-up is over (a no-op unless paused).

    What start-up built is frozen first: it lives as long as the process, and collections
    that skip it stay as cheap as in a process that had imported nothing.
    """
    if _state["gc_paused"]:
        _state["gc_paused"] = False
        gc.freeze()
        gc.enable()


def user_code_runs() -> None:
    """Note that the user's own code runs in this process: it ends with a normal exit."""
    _state["user_code_ran"] = True


def user_code_ran() -> bool:
    """True once :func:`user_code_runs` was called in this process."""
    return _state["user_code_ran"]


def exit_now(status: int) -> None:
    """End the process now with ``status``: ``atexit`` handlers run, the streams are flushed,
    nothing else (no thread is waited for, no object finalised)."""
    _exit(status)


def _exit(status: int) -> None:
    """Run the ``atexit`` handlers, flush the standard streams and end the process now."""
    atexit._run_exitfuncs()
    streams = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    for stream in dict.fromkeys(s for s in streams if s is not None):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader went away (`| head`) or the stream is closed: nothing to deliver
        except OSError as error:  # a full disk, an I/O error: the output is incomplete
            with suppress(OSError, ValueError):
                os.write(2, f"Error: could not write the output: {error}\n".encode())
            status = status or 1
    os._exit(status & 0xFF)  # as the interpreter would: sys.exit(-1) ends with 255
