"""No secret leaks: a recognisable password run through every command appears nowhere.

Each command that exists is invoked with a URL carrying the canary password, against each
backend (PostgreSQL accepts it under trust auth; MariaDB refuses it, which exercises the
error path), and with a sync-driver URL (the configuration-error path). The canary must not
appear in stdout, stderr or any file the command wrote. Add every new command here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, run_process, server_for, with_password

# The repository's own Alembic project, for the read-only migrate invocations.
REPO_INI = str(Path(__file__).resolve().parent.parent / "alembic.ini")

# Each entry: the arguments after `myfy-db`; "{url}" is replaced by the canary URL.
INVOCATIONS: list[list[str]] = [
    ["config", "--url", "{url}"],
    ["config", "--json", "--url", "{url}"],
    ["profile-pool", "--url", "{url}", "--workers", "4"],
    ["profile-pool", "--json", "--url", "{url}", "--load", "--duration", "0.2"],
    ["profile-pool", "--url", "{url}", "--offline", "--tier", "high"],
    ["shell", "--url", "{url}", "-c", "await session.scalar(text('SELECT 1'))"],
    ["shell", "--url", "{url}", "--sandbox", "--read-only", "-c", "print(engine.url); 1 / 0"],
    ["create-tables", "--sql", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
    ["create-tables", "--json", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
    ["drop-tables", "--dry-run", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
    ["drop-tables", "--yes", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
    ["check-pool", "--samples", "2", "--url", "{url}"],
    ["check-pool", "--samples", "2", "--json", "--url", "{url}"],
    ["migrate", "--url", "{url}"],
    ["migrate", "status", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "status", "--json", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "--sql", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "check", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
]


@pytest.fixture
def canary_urls(postgres_url: str, mysql_url: str) -> Iterator[dict[str, str]]:
    """URLs carrying the canary password, each on a fresh database.

    PostgreSQL (trust auth) accepts any password; on MariaDB a user is created with the
    canary as its real password, so the success paths run too; root with the canary as a
    wrong password exercises the authentication failure.
    """
    mysql = server_for("mysql")
    database = make_url(mysql_url).database
    user = f"myfy_canary_{uuid.uuid4().hex[:8]}"
    mysql.admin(
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{CANARY}'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{CANARY}'",
        f"GRANT ALL ON `{database}`.* TO '{user}'@'%'",
        f"GRANT ALL ON `{database}`.* TO '{user}'@'localhost'",
    )
    try:
        yield {
            "sync-driver": f"postgresql://app:{CANARY}@127.0.0.1:1/db",
            "postgresql": with_password(postgres_url),
            "mysql": make_url(mysql_url)
            .set(username=user, password=CANARY)
            .render_as_string(hide_password=False),
            "mysql-wrong-password": with_password(mysql_url),
        }
    finally:
        mysql.admin(
            f"DROP USER IF EXISTS '{user}'@'%'", f"DROP USER IF EXISTS '{user}'@'localhost'"
        )


def _files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize("args", INVOCATIONS, ids=lambda a: " ".join(a).replace("{url}", "URL"))
def test_canary_password_never_appears(
    args: list[str], tmp_path: Path, canary_urls: dict[str, str]
) -> None:
    for label, url in canary_urls.items():
        workdir = tmp_path / label
        workdir.mkdir()
        argv = [a.replace("{url}", url) for a in args]
        result = run_process(*argv, cwd=str(workdir), env={"MYFY_DATA_ECHO": "true"})
        assert CANARY not in result.stdout, f"{label}: stdout leaks the password"
        assert CANARY not in result.stderr, f"{label}: stderr leaks the password"
        assert not _files_containing(workdir, CANARY), f"{label}: a written file leaks it"
        assert "Traceback" not in result.stderr, f"{label}: {result.stderr}"
        if label in ("postgresql", "mysql"):
            assert result.returncode != 4, f"{label} should connect: {result.stderr}"
