"""``myfy-db shell``: a live async session REPL, sandboxed by default in a protected environment."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.lifecycle import user_code_runs
from myfy_db.cli.options import EnvFileOption, MetadataOption, UrlOption, YesOption
from myfy_db.cli.runtime import fail_usage, load, run, wants_traceback
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from myfy_db.cli.output import Output
    from myfy_db.guard import EnvironmentRecord
    from myfy_db.settings import DatabaseSettings, LoadedSettings
    from myfy_db.shell.sandbox import SandboxOutcome
    from myfy_db.shell.session import ShellContext

CommandOption = Annotated[
    str | None,
    typer.Option(
        "-c",
        "--command",
        help="Run CODE (top-level await allowed) and exit: 0 on success, 1 when it raises.",
        show_default=False,
        metavar="CODE",
    ),
]
SandboxOption = Annotated[
    bool | None,
    typer.Option(
        "--sandbox/--no-sandbox",
        help=(
            "Roll back everything the session does, commits included, when the shell exits; "
            "refuse whatever would escape that. Default: on in a protected environment or on "
            "a database recorded as one (--no-sandbox there asks for the database name), off "
            "elsewhere."
        ),
        show_default=False,
    ),
]
ReadOnlyOption = Annotated[
    bool,
    typer.Option(
        "--read-only",
        help="Put the connections in read-only mode (the server refuses writes) and refuse "
        "statements that switch it back.",
    ),
]
IPythonOption = Annotated[bool, typer.Option("--ipython", help="Use IPython (when installed).")]
PtpythonOption = Annotated[bool, typer.Option("--ptpython", help="Use ptpython (when installed).")]


def shell(
    command: CommandOption = None,
    sandbox: SandboxOption = None,
    read_only: ReadOnlyOption = False,
    ipython: IPythonOption = False,
    ptpython: PtpythonOption = False,
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    yes: YesOption = False,
) -> None:
    """A live REPL with top-level await, a ready `session` (AsyncSession), `engine`, the
    SQLAlchemy verbs and the metadata's models.

    `-c CODE` runs one snippet and exits. `--sandbox` rolls everything back on exit, commits
    included; it is the default in a protected environment. `--read-only` makes the server
    refuse writes.
    """
    if ipython and ptpython:
        fail_usage("choose one of --ipython and --ptpython")
    if command is not None and (ipython or ptpython):
        fail_usage("-c runs without a REPL; leave out --ipython/--ptpython")

    def action(out: Output) -> Any:
        if command is None and _stdin_closed():
            raise ConfigError("no terminal: use -c CODE or run it in a terminal")
        import myfy_db.shell.session  # noqa: F401  (SQLAlchemy and the session load with start-up)

        loaded = load(url, env_file, metadata=metadata)
        rule = _SandboxRule(out, loaded, sandbox, yes=yes)
        if command is not None:
            return _run_command(out, rule, command, read_only=read_only)
        _run_interactive(
            out,
            rule,
            read_only=read_only,
            flavour="ipython" if ipython else "ptpython" if ptpython else "stdlib",
        )
        return None

    run(action, read_only=read_only)


def _stdin_closed() -> bool:
    """True when there is no standard input to read code from (``<&-``): a pipe or a file
    of code is fine, and so is a terminal."""
    import io
    import os

    if sys.stdin is None or sys.stdin.closed:
        return True
    try:
        os.fstat(sys.stdin.fileno())
    except io.UnsupportedOperation:  # not a file descriptor (an embedding program's stream)
        return False
    except (OSError, ValueError):
        return True
    return False


class _SandboxRule:
    """Whether the shell is sandboxed: the flag, the local environment and the database's record.

    On a database recorded as protected the shell opens sandboxed; ``--no-sandbox`` there is
    refused (exit 3) from another environment and asks for the typed database name from the
    same one. Only ``MYFY_DB_DISABLE_ENVIRONMENT_CHECK=1`` lifts the record's rule.
    """

    def __init__(
        self, out: Output, loaded: LoadedSettings, requested: bool | None, *, yes: bool
    ) -> None:
        self.out = out
        self.loaded = loaded
        self.settings = loaded.settings
        self.requested = requested
        self.yes = yes
        self.confirmed = False

    async def confirm(self) -> None:
        """``--no-sandbox``: read the record and apply the rule, asking when it says so."""
        if self.requested is not False:
            return
        from myfy_db.shell.session import read_database_record

        record, name = await read_database_record(self.settings)
        self.decide(record, ask=True, name=name)

    def decide(
        self, record: EnvironmentRecord | None, *, ask: bool = False, name: str | None = None
    ) -> bool:
        from myfy_db.errors import Refused
        from myfy_db.guard import OVERRIDE_VARIABLE, override_enabled
        from myfy_db.settings import normalise_environment
        from myfy_db.shell.session import record_is_protected

        settings = self.settings
        guarded = record_is_protected(record, settings) and not override_enabled()
        if self.requested is None:
            return guarded or settings.is_protected
        if self.requested:
            return True
        if self.confirmed:
            return False
        if guarded and record is not None:
            recorded = record.environment
            if normalise_environment(recorded) != normalise_environment(settings.environment):
                raise Refused(
                    f"shell --no-sandbox refused: the database is recorded as {recorded!r} "
                    f"(protected) but the current environment is {settings.environment!r} "
                    f"(from {self.loaded.source_of('environment')})",
                    hint=f"open it sandboxed (leave out --no-sandbox), or set "
                    f"{OVERRIDE_VARIABLE}=1 if you must",
                )
        if guarded or settings.is_protected:
            if not ask:
                raise Refused("shell --no-sandbox needs confirmation", hint="run it again")
            from myfy_db.cli.confirm import confirm_by_name, database_name

            environment = record.environment if guarded and record else settings.environment
            confirm_by_name(
                self.out,
                f"A shell on the {environment} database WITHOUT a sandbox "
                "(every change it commits is permanent)",
                name or database_name(settings.database_url),
                yes=self.yes,
            )
        self.confirmed = True
        return False


async def _run_command(out: Output, rule: _SandboxRule, source: str, *, read_only: bool) -> None:
    from myfy_db.errors import OperationFailed
    from myfy_db.shell.errors import format_full_traceback
    from myfy_db.shell.running import describe_error, run_bridged, run_snippet
    from myfy_db.shell.sandbox import StatementRefused
    from myfy_db.shell.session import open_shell
    from myfy_db.urls import redact

    await rule.confirm()
    context = await open_shell(rule.settings, read_only=read_only, choose=rule.decide)
    user_code_runs()
    failure: Exception | None = None
    try:
        try:
            value = await run_snippet(source, context.namespace)
        except SystemExit as exit_request:
            if exit_request.code not in (None, 0):
                code = exit_request.code if isinstance(exit_request.code, int) else 1
                raise typer.Exit(code) from None
            value = None
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the edge ends the run quietly
        except StatementRefused as refused:
            failure = refused
        except Exception as exc:
            if wants_traceback():
                sys.stderr.write(format_full_traceback(exc))
            message, where = describe_error(exc, source)
            failure = OperationFailed(f"the code raised {message}", hint=where)
        else:
            if type(value) in (int, float, bool, str):  # plain values: no renderer to load
                sys.stdout.write(redact(repr(value)) + "\n")
            elif value is not None:
                from myfy_db.shell.display import shell_repr

                shown = await run_bridged(lambda: shell_repr(value))
                sys.stdout.write(shown + "\n")
            sys.stdout.flush()
    finally:
        outcome = await context.close()
    _report_sandbox(out, outcome)
    if failure is not None:
        raise failure


def _report_sandbox(out: Output, outcome: SandboxOutcome | None) -> None:
    """The closing line: what the server held when the sandbox closed."""
    if outcome is None:
        return
    if not outcome.sandbox:
        out.warn(outcome.detail)
        return
    if outcome.intact:
        out.info(f"sandbox: {outcome.detail}")
        return
    from myfy_db.errors import OperationFailed

    raise OperationFailed(
        f"SANDBOX BROKEN: {outcome.detail}",
        hint="check the database: what the code did before that may be permanent",
    )


def _run_interactive(out: Output, rule: _SandboxRule, *, read_only: bool, flavour: str) -> None:
    import asyncio

    from myfy_db.shell import console
    from myfy_db.shell.session import open_shell

    asyncio.run(rule.confirm())
    outcomes: list[SandboxOutcome | None] = []

    def start() -> Any:
        return open_shell(rule.settings, read_only=read_only, choose=rule.decide)

    def banner(context: ShellContext) -> None:
        user_code_runs()
        _print_banner(out, rule.settings, context, flavour)

    if flavour == "ipython":
        status = console.interact_ipython(start, banner, closed=outcomes.append)
    elif flavour == "ptpython":
        status = console.interact_ptpython(start, banner, closed=outcomes.append)
    else:
        status = console.interact(
            start, banner, full_traceback=wants_traceback(), closed=outcomes.append
        )
    for outcome in outcomes:
        _report_sandbox(out, outcome)
    if status:
        raise typer.Exit(status)


#: What enforces the sandbox, by backend (the README's "The shell's sandbox" says the same).
_SANDBOX_BOUNDARY = {
    "postgresql": "PostgreSQL's own parser reads every statement and refuses transaction "
    "control, session switches and functions a rollback does not undo",
    "mysql": "it is an XA transaction, so the server itself refuses COMMIT, BEGIN and every "
    "statement that would commit implicitly",
    "mariadb": "it is an XA transaction, so the server itself refuses COMMIT, BEGIN and every "
    "statement that would commit implicitly",
    "sqlite": "SQLite's authorizer refuses COMMIT, BEGIN, SAVEPOINT, ATTACH and guarded pragmas "
    "as SQLite compiles them",
}


def _print_banner(
    out: Output, settings: DatabaseSettings, context: ShellContext, flavour: str
) -> None:
    from rich.markup import escape

    from myfy_db.shell.session import DIRTY_PROMPT

    console = out.err
    console.print(f"[bold]myfy-db shell[/] on {escape(settings.masked_url)}", highlight=False)
    if settings.is_protected:
        console.print(
            f"[bold white on red]environment: {escape(settings.environment)} (PROTECTED)[/]",
            highlight=False,
        )
    else:
        console.print(f"environment: {escape(settings.environment)}", highlight=False)
    if context.record_protected and context.record is not None:
        console.print(
            "[bold white on red]database recorded as "
            f"{escape(context.record.environment)} (PROTECTED) in myfy_db_meta[/]",
            highlight=False,
        )
    if context.sandbox:
        from myfy_db.shell.sandbox import SANDBOX_NAME

        console.print(
            "[bold green]sandbox ON[/]: everything the session does, commits included, is rolled "
            f"back on exit; {_SANDBOX_BOUNDARY.get(context.engine.dialect.name, '')}; the shell "
            "holds one connection and refuses any other",
            highlight=False,
        )
        if context.engine.dialect.name != "sqlite":
            console.print(
                "sequence values consumed by inserts are not given back: sequences are not "
                "transactional",
                highlight=False,
            )
        console.print(
            "the sandbox holds one transaction open on the server until you leave "
            f"(application_name {SANDBOX_NAME!r}): keep it short",
            highlight=False,
        )
    else:
        console.print(
            "[yellow]sandbox off[/]: commits are permanent. Between inputs the shell holds no "
            "transaction; uncommitted changes hold locks until you commit or roll back "
            f"(the prompt reads {DIRTY_PROMPT.strip()!r} meanwhile)",
            highlight=False,
        )
    if context.read_only:
        console.print("[bold green]read-only[/]: the server refuses writes", highlight=False)
    preloaded = ["session", "engine", *("connection",) * context.sandbox]
    preloaded += ["select", "insert", "update", "delete", "text", "func"]
    console.print(f"preloaded: {', '.join(preloaded)}", highlight=False)
    console.print(
        "helpers: tables(), describe(name_or_model), sql('SELECT ...'); help() lists them",
        highlight=False,
    )
    if context.models:
        console.print(f"models: {', '.join(context.models)}", highlight=False)
    elif not settings.metadata:
        console.print("models: none (set --metadata module:attr to preload them)", highlight=False)
    hint = "exit() or Ctrl-D" if flavour == "stdlib" else "exit()"
    console.print(
        "Top-level await works: [cyan]await session.scalar(text('SELECT 1'))[/]. "
        f"Leave with {hint}.",
        highlight=False,
    )


__all__ = ["shell"]
