"""Options shared by many commands, declared once as ``Annotated`` aliases."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Database URL (overrides MYFY_DATA_DATABASE_URL).",
        show_default=False,
        metavar="URL",
    ),
]
EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        help="Read settings from this file instead of ./.env.",
        show_default=False,
        metavar="PATH",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Write one JSON document to stdout; prose goes to stderr."),
]
MetadataOption = Annotated[
    str | None,
    typer.Option(
        "--metadata",
        help="module:attr naming a DeclarativeBase or MetaData (overrides MYFY_DATA_METADATA).",
        show_default=False,
        metavar="MODULE:ATTR",
    ),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal)."),
]


if TYPE_CHECKING:
    FiniteFloat = float
    PositiveFloat = float
else:

    class FiniteFloat(float):
        """A float flag that refuses ``inf`` and ``nan`` (the flag's ``min``/``max`` still
        apply): use it instead of ``float`` for every numeric flag."""

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
            from pydantic_core import core_schema

            return core_schema.float_schema(allow_inf_nan=False)

    class PositiveFloat(float):
        """A finite float flag that must be above zero (a rate, a duration)."""

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
            from pydantic_core import core_schema

            return core_schema.float_schema(allow_inf_nan=False, gt=0)

    # Typer names a number flag's type after its class: keep the help saying FLOAT.
    FiniteFloat.__name__ = PositiveFloat.__name__ = "float"

WaitOption = Annotated[
    FiniteFloat | None,
    typer.Option(
        "--wait",
        min=0,
        help="Wait up to this many seconds for the database to accept connections, retrying "
        "with backoff (one line per attempt on stderr); then exit 4. Authentication "
        "failures and missing databases are not retried.",
        show_default=False,
        metavar="SECONDS",
    ),
]

#: Where ``--wait`` is kept once parsed: the context's ``meta``, which a group and its
#: subcommands share (``migrate --wait 5 status``). Read by :func:`myfy_db.cli.runtime.run`.
WAIT_KEY = "myfy_db.wait"


def _remember_wait(ctx: Any, _param: Any, value: Any) -> Any:
    if value is not None:
        ctx.meta[WAIT_KEY] = float(value)
    return value


@functools.cache
def _wait_param() -> Any:
    """``--wait`` as a Click option, converted by Typer from :data:`WaitOption` once per
    process and shared by every command: parsed and kept in the context, never passed to
    the command's function."""
    probe = typer.Typer()

    @probe.command()
    def declares(wait: WaitOption = None) -> None:
        """Declares --wait."""

    command = typer.main.get_command(probe)
    param = next(p for p in command.params if p.name == "wait")
    param.expose_value = False
    param.callback = _remember_wait
    return param


class ConnectingCommand(TyperCommand):
    """A command that connects to the database: it takes ``--wait SECONDS``, declared here
    once instead of in every command's signature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_wait_param())


class ConnectingGroup(TyperGroup):
    """A group whose own callback connects (``migrate``): it takes ``--wait`` too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(_wait_param())
