"""Options shared by many commands, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
