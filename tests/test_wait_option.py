"""``--wait`` is declared once (a command class adds it to every command that connects) and
read once, at the command edge: given to the command, or to ``migrate`` before its
subcommand, it bounds the wait the same way. Nothing listens on the port: every attempt is
refused, so each run ends in exit 4 after the wait.
"""

from __future__ import annotations

import pytest

from helpers import free_port, invoke

FORMS = [
    ("migrate", "--wait", "0.5", "status"),
    ("migrate", "--wait", "0.5"),
    ("migrate", "up", "head", "--wait", "0.5"),
    ("migrate", "reset", "--yes", "--wait", "0.5"),
    ("migrate", "current", "--wait", "0.5"),
    ("create-tables", "--metadata", "myfy_db.example:Base", "--wait", "0.5"),
]


@pytest.mark.parametrize("args", FORMS, ids=lambda a: " ".join(a))
def test_wait_bounds_every_connecting_command_wherever_it_is_given(
    args: tuple[str, ...],
) -> None:
    url = f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db"
    assert invoke("migrate", "init").exit_code == 0
    result = (
        invoke(*args, "--url", url)
        if args[1] != "--wait"
        else invoke(args[0], "--url", url, *args[1:])
    )
    assert result.exit_code == 4, result.stderr
    assert "gave up after waiting 0.5 s" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("migrate", "heads"), ("migrate", "init"), ("config",)])
def test_commands_that_never_connect_do_not_take_wait(args: tuple[str, ...]) -> None:
    result = invoke(*args, "--wait", "1")
    assert result.exit_code == 2
    assert "No such option: --wait" in result.stderr


def test_the_wait_parameter_reaches_no_command_function() -> None:
    import inspect

    from myfy_db.cli import check_pool, create_tables, migrate_cmd, migrate_look, shell

    for function in (
        check_pool.check_pool,
        create_tables.create_tables,
        migrate_cmd.migrate,
        migrate_cmd.up,
        migrate_look.status,
        shell.shell,
    ):
        assert "wait" not in inspect.signature(function).parameters
