"""No secret leaks: a recognisable password run through every command appears nowhere.

Each command that exists is invoked with a URL carrying the canary password, against each
backend (PostgreSQL accepts it under trust auth; MariaDB refuses it, which exercises the
error path), and with a sync-driver URL (the configuration-error path). The canary must not
appear in stdout, stderr or any file the command wrote. Add every new command here.

Then again with passwords holding each of ``/ ? # @ : %`` and a space, with ``--traceback``:
raw in the URL (PostgreSQL, and MariaDB through a user created with that password, both
connect), URL-encoded (MariaDB), and with a raw ``@`` that SQLAlchemy splits the URL at
(the cannot-resolve-host path). Neither the password nor its encoded form may appear.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from helpers import CANARY, run_process, server_for, with_password

#: Every character that breaks a naive URL parser; the raw one has no "@" so SQLAlchemy
#: reads it whole from a raw URL.
SPECIAL = "Cn/?#@: %7f-Special"
SPECIAL_RAW = "Cr/?#: %7f-RawSpecial"

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
    special_user = f"{user}_sp"
    users = [(user, CANARY), (special_user, SPECIAL)]
    for name, password in users:
        mysql.admin(
            f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'",
            f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'",
            f"GRANT ALL ON `{database}`.* TO '{name}'@'%'",
            f"GRANT ALL ON `{database}`.* TO '{name}'@'localhost'",
        )
    try:
        yield {
            "sync-driver": f"postgresql://app:{CANARY}@127.0.0.1:1/db",
            "postgresql": with_password(postgres_url),
            "mysql": make_url(mysql_url)
            .set(username=user, password=CANARY)
            .render_as_string(hide_password=False),
            "mysql-wrong-password": with_password(mysql_url),
            # Special characters, shown with --traceback (see _special_urls).
            "postgresql-special-raw": _raw(postgres_url, "postgres", SPECIAL_RAW),
            "mysql-special-encoded": make_url(mysql_url)
            .set(username=special_user, password=SPECIAL)
            .render_as_string(hide_password=False),
            "special-raw-at": _raw(postgres_url, "postgres", SPECIAL),
        }
    finally:
        for name, _ in users:
            mysql.admin(
                f"DROP USER IF EXISTS '{name}'@'%'", f"DROP USER IF EXISTS '{name}'@'localhost'"
            )


def _raw(url: str, user: str, password: str) -> str:
    """``url`` with ``user:password`` written into it as is, not URL-encoded."""
    u = make_url(url)
    return f"{u.drivername}://{user}:{password}@{u.host}:{u.port or 5432}/{u.database}"


def _needles(label: str) -> list[str]:
    """The texts that must never appear for the URL labelled ``label``."""
    if "special" not in label:
        return [CANARY]
    password = SPECIAL_RAW if label.endswith("-raw") else SPECIAL
    needles = {password, quote(password, safe=""), quote(password), json.dumps(password)[1:-1]}
    if label == "special-raw-at":
        needles.add(password.split("@", 1)[1])  # what SQLAlchemy takes for the host
    return sorted(needles)


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
        special = "special" in label
        if special:
            argv = ["--traceback", *argv]
        result = run_process(*argv, cwd=str(workdir), env={"MYFY_DATA_ECHO": "true"})
        for needle in _needles(label):
            assert needle not in result.stdout, f"{label}: stdout leaks {needle!r}"
            assert needle not in result.stderr, f"{label}: stderr leaks {needle!r}"
            assert not _files_containing(workdir, needle), f"{label}: a written file leaks it"
        if not special:
            assert "Traceback" not in result.stderr, f"{label}: {result.stderr}"
        if label in ("postgresql", "mysql", "postgresql-special-raw", "mysql-special-encoded"):
            assert result.returncode != 4, f"{label} should connect: {result.stderr}"
