"""What a new user met in profile-pool (issue 22): the tier table says whose value falls
short, and the --load figures keep every name whole at 80 columns, on a real terminal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers import invoke, on_a_terminal


def test_the_tier_table_says_the_setting_falls_short(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "p.db").close()
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    result = invoke("profile-pool", "--url", url, "--pool-recycle", "3600")
    assert result.exit_code == 0, result.output
    assert "<= 1800 SHORT (yours: 1800 s too long)" in result.stdout


def test_load_figures_fit_80_columns(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "p.db").close()
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    code, screen = on_a_terminal(
        ["profile-pool", "--url", url, "--load", "--duration", "0.2"],
        None,
        str(tmp_path),
        env={"COLUMNS": "80"},
    )
    assert code == 0, screen
    for name in ("queries", "per second", "timeouts", "refused by the server", "errors"):
        assert name in screen
    assert "checkout wait p50 / p95 / p99 / max" in screen
    assert "…" not in screen.split("Load:")[1].split("Checkout wait:")[0]
