"""``myfy-db --help`` against a bare two-command Typer app and against ``alembic --help``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import BIN, Comparison, interleaved, median_process_time

BARE_APP = '''
import typer

app = typer.Typer()


@app.command()
def one(name: str = "x") -> None:
    """First command."""


@app.command()
def two(count: int = 1) -> None:
    """Second command."""


if __name__ == "__main__":
    app()
'''


def run() -> list[Comparison]:
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE_APP)
        ours_argv = [str(BIN / "myfy-db"), "--help"]
        bare_argv = [sys.executable, str(bare), "--help"]
        alembic_argv = [str(BIN / "alembic"), "--help"]
        env = {"COLUMNS": "100"}
        ours, bare_t = interleaved(
            lambda: median_process_time(ours_argv, runs=7, env=env, cwd=tmp),
            lambda: median_process_time(bare_argv, runs=7, env=env, cwd=tmp),
        )
        alembic = median_process_time(alembic_argv, runs=15, env=env, cwd=tmp)
    return [
        Comparison("myfy-db --help", ours, bare_t, "bare Typer app --help", target=1.2),
        Comparison("myfy-db --help", ours, alembic, "alembic --help"),
    ]
