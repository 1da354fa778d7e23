"""Options shared by many commands, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
