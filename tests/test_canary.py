"""No secret leaks: a recognisable password run through every command appears nowhere.

Each command that exists is invoked with a URL carrying the canary password, against each
backend (PostgreSQL accepts it under trust auth; MariaDB refuses it, which exercises the
error path), and with a sync-driver URL (the configuration-error path). The canary must not
appear in stdout, stderr or any file the command wrote. Add every new command here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import CANARY, run_process, server_for, with_password

# The repository's own Alembic project, for the read-only migrate invocations.
REPO_INI = str(Path(__file__).resolve().parent.parent / "alembic.ini")

# Each entry: the arguments after `myfy-db`; "{url}" is replaced by the canary URL.
INVOCATIONS: list[list[str]] = [
    ["config", "--url", "{url}"],
    ["config", "--json", "--url", "{url}"],
    ["migrate", "--url", "{url}"],
    ["migrate", "status", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "status", "--json", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "--sql", "--config", REPO_INI, "--url", "{url}"],
    ["migrate", "check", "--metadata", "myfy_db.example:Base", "--url", "{url}"],
]


def _canary_urls(tmp_path: Path) -> dict[str, str]:
    urls = {"sync-driver": f"postgresql://app:{CANARY}@127.0.0.1:1/db"}
    for backend in ("postgresql", "mysql"):
        server = server_for(backend)
        server.require()
        urls[backend] = with_password(server.url)
    return urls


def _files_containing(root: Path, needle: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize("args", INVOCATIONS, ids=lambda a: " ".join(a).replace("{url}", "URL"))
def test_canary_password_never_appears(args: list[str], tmp_path: Path) -> None:
    for label, url in _canary_urls(tmp_path).items():
        workdir = tmp_path / label
        workdir.mkdir()
        argv = [a.replace("{url}", url) for a in args]
        result = run_process(*argv, cwd=str(workdir), env={"MYFY_DATA_ECHO": "true"})
        assert CANARY not in result.stdout, f"{label}: stdout leaks the password"
        assert CANARY not in result.stderr, f"{label}: stderr leaks the password"
        assert not _files_containing(workdir, CANARY), f"{label}: a written file leaks it"
        assert "Traceback" not in result.stderr, f"{label}: {result.stderr}"
