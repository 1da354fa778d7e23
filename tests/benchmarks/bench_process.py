"""What the console script's process handling saves (``myfy_db.cli.process``).

The same commands, run two ways as whole processes: the ``myfy-db`` console script (the
collector paused for start-up, a direct exit once the output is flushed) and a script that
calls the Typer ``app`` itself, as a program embedding it would (the collector on throughout,
the interpreter's full teardown at exit). Lower is better; the reference is our own app.

The SQLite commands run on a database file made before the clock starts: ``check-pool``
only reads, and refuses (exit 4) a file that does not exist rather than create it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import BIN, Comparison, interleaved, median_process_time, sqlite_database

IN_PROCESS = "import sys\nfrom myfy_db.cli import app\nsys.argv[0] = 'myfy-db'\napp()\n"
COMMANDS = {
    "config --json": ["config", "--json"],
    "check-pool (SQLite)": ["check-pool", "--url", "sqlite+aiosqlite:///bench.db"],
    "shell -c (SQLite)": ["shell", "--url", "sqlite+aiosqlite:///bench.db", "-c", "1"],
}


def run() -> list[Comparison]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "in_process.py"
        script.write_text(IN_PROCESS)
        sqlite_database(Path(tmp) / "bench.db")  # relative in COMMANDS: cwd is tmp
        for label, args in COMMANDS.items():
            ours_argv = [str(BIN / "myfy-db"), *args]
            plain_argv = [sys.executable, str(script), *args]
            ours, reference = interleaved(
                lambda a=ours_argv: median_process_time(a, runs=7, cwd=tmp),  # type: ignore[misc]
                lambda a=plain_argv: median_process_time(a, runs=7, cwd=tmp),  # type: ignore[misc]
            )
            results.append(
                Comparison(
                    f"myfy-db {label}, console script",
                    ours,
                    reference,
                    "the same app called in-process by a script",
                    target=1.0,
                )
            )
    return results
