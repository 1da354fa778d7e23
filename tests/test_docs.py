"""The README's command reference and the shell completions are generated from the app."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from myfy_db.cli.reference import (
    GENERATORS,
    SHELLS,
    CommandInfo,
    _walk,
    command_tree,
    updated_readme,
)

ROOT = Path(__file__).resolve().parent.parent


def test_readme_command_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == updated_readme(readme), (
        "README.md is stale: run python -m myfy_db.cli.reference --write"
    )


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completion_script_is_current(shell: str) -> None:
    committed = (ROOT / "completions" / SHELLS[shell]).read_text(encoding="utf-8")
    assert committed == GENERATORS[shell](), (
        f"completions/{SHELLS[shell]} is stale: run python -m myfy_db.cli.reference --write"
    )


def test_every_command_and_option_has_help() -> None:
    for command in _walk(command_tree()):
        assert command.help.strip(), f"{command.title} has no help"
        for option in command.options:
            assert option.help.strip(), f"{command.title} {option.names[0]} has no help"


def _bash_complete(line: str) -> list[str]:
    script = ROOT / "completions" / SHELLS["bash"]
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_myfy_db\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_completes_commands_and_options() -> None:
    tree = command_tree()
    assert set(_bash_complete("myfy-db ")) >= {s.path[-1] for s in tree.subcommands}
    assert "--json" in _bash_complete("myfy-db config --")
    assert "--env-file" in _bash_complete("myfy-db config --url x --e")


def test_readme_lint_rule_table_is_current() -> None:
    from myfy_db.migrations.lint import all_rules, docs

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == docs.updated_readme(readme), (
        "README.md's lint rule table is stale: run python -m myfy_db.cli.reference --write"
    )
    for rule in all_rules():
        assert f"| `{rule.id}` {rule.name} |" in readme
        assert rule.summary
        assert rule.breaks
        assert rule.safe


@pytest.mark.parametrize("command", _walk(command_tree()), ids=lambda c: c.title)
def test_readme_reference_reads_as_the_help_does(command: CommandInfo) -> None:
    """The README's usage line and option names are the ones ``-h`` prints, for every command."""
    from helpers import invoke

    shown = invoke(*command.path, "-h")
    assert shown.exit_code == 0, shown.stderr
    first = next(line for line in shown.stdout.splitlines() if line.strip())
    assert first == f"Usage: {command.usage}"
    columns = [line.strip().split("  ")[0] for line in shown.stdout.splitlines()]
    for option in command.options:
        assert option.shown in columns, f"{command.title}: {option.shown!r} is not in -h"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"### `{command.title}`\n", 1)[1].split("\n### ", 1)[0]
    assert f"```\n{command.usage}\n```" in section
