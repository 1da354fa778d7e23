"""``myfy-db shell``: a live async session REPL, sandboxed by default in a protected environment."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from myfy_db.cli.options import EnvFileOption, MetadataOption, UrlOption, WaitOption, YesOption
from myfy_db.cli.process import user_code_runs
from myfy_db.cli.runtime import fail_usage, load, run, wants_traceback
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from myfy_db.output import Output
    from myfy_db.settings import DatabaseSettings
    from myfy_db.shell import ShellContext

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
            "Roll back everything the session does, commits included, when the shell exits. "
            "Default: on in a protected environment (--no-sandbox there asks for the database "
            "name), off elsewhere."
        ),
        show_default=False,
    ),
]
ReadOnlyOption = Annotated[
    bool,
    typer.Option(
        "--read-only", help="Put the connections in read-only mode: the server refuses writes."
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
    wait: WaitOption = None,
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
        import myfy_db.shell  # noqa: F401  (SQLAlchemy and the session load with start-up)

        settings = load(url, env_file, metadata=metadata).settings
        use_sandbox = _sandbox_mode(out, settings, sandbox, yes=yes)
        if command is not None:
            return _run_command(out, settings, command, sandbox=use_sandbox, read_only=read_only)
        _run_interactive(
            out,
            settings,
            sandbox=use_sandbox,
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


def _sandbox_mode(
    out: Output, settings: DatabaseSettings, requested: bool | None, *, yes: bool
) -> bool:
    if requested is None:
        return settings.is_protected
    if not requested and settings.is_protected:
        from myfy_db.cli.confirm import confirm_by_name, database_name

        confirm_by_name(
            out,
            f"A shell on the {settings.environment} database WITHOUT a sandbox "
            "(every change it commits is permanent)",
            database_name(settings.database_url),
            yes=yes,
        )
    return requested


async def _run_command(
    out: Output, settings: DatabaseSettings, source: str, *, sandbox: bool, read_only: bool
) -> None:
    from myfy_db.errors import OperationFailed
    from myfy_db.shell import describe_error, open_shell, run_snippet
    from myfy_db.shell_errors import format_full_traceback

    context = await open_shell(settings, sandbox=sandbox, read_only=read_only)
    user_code_runs()
    failure: OperationFailed | None = None
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
        except Exception as exc:
            if wants_traceback():
                sys.stderr.write(format_full_traceback(exc))
            message, where = describe_error(exc, source)
            failure = OperationFailed(f"the code raised {message}", hint=where)
        else:
            if value is not None:
                from myfy_db.shell_display import shell_repr

                sys.stdout.write(shell_repr(value) + "\n")
            sys.stdout.flush()
    finally:
        await context.close()
    if sandbox:
        out.info("sandbox: everything the code did was rolled back")
    if failure is not None:
        raise failure


def _run_interactive(
    out: Output, settings: DatabaseSettings, *, sandbox: bool, read_only: bool, flavour: str
) -> None:
    from myfy_db import shell as library

    def start() -> Any:
        return library.open_shell(settings, sandbox=sandbox, read_only=read_only)

    def banner(context: ShellContext) -> None:
        user_code_runs()
        _print_banner(out, settings, context, flavour)

    if flavour == "ipython":
        status = library.interact_ipython(start, banner)
    elif flavour == "ptpython":
        status = library.interact_ptpython(start, banner)
    else:
        status = library.interact(start, banner, full_traceback=wants_traceback())
    if sandbox:
        out.info("sandbox rolled back: nothing this shell did was kept")
    if status:
        raise typer.Exit(status)


def _print_banner(
    out: Output, settings: DatabaseSettings, context: ShellContext, flavour: str
) -> None:
    from rich.markup import escape

    console = out.err
    console.print(f"[bold]myfy-db shell[/] on {escape(settings.masked_url)}", highlight=False)
    if settings.is_protected:
        console.print(
            f"[bold white on red]environment: {escape(settings.environment)} (PROTECTED)[/]",
            highlight=False,
        )
    else:
        console.print(f"environment: {escape(settings.environment)}", highlight=False)
    if context.sandbox:
        console.print(
            "[bold green]sandbox ON[/]: everything the session does, commits included, is rolled "
            "back on exit; other connections from `engine` are read-only",
            highlight=False,
        )
    else:
        console.print("[yellow]sandbox off[/]: commits are permanent", highlight=False)
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
