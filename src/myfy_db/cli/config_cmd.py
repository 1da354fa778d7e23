"""``myfy-db config``: the effective settings, each with its source, password masked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.output import Output


def config(
    url: UrlOption = None,
    env_file: EnvFileOption = None,
    metadata: MetadataOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the effective settings and where each came from; exit 2 when they are invalid.

    Run it in CI to validate an application's database configuration.
    """

    def action(out: Output) -> None:
        from myfy_db.output import table
        from myfy_db.settings import InvalidSettings, describe_settings

        try:
            loaded = load(url, env_file, metadata=metadata)
        except InvalidSettings as invalid:
            problems = invalid.errors
            errors = [
                {"setting": e.field, "source": e.source, "value": e.value, "message": e.message}
                for e in problems
            ]

            def list_errors(_: Console) -> None:
                for problem in problems:
                    out.info(str(problem))

            out.emit({"valid": False, "errors": errors}, list_errors)
            raise ConfigError(f"configuration is invalid ({len(errors)} setting(s))") from None
        rows = describe_settings(loaded)
        settings = loaded.settings

        def render(console: Console) -> None:
            console.print(
                table(
                    "Effective settings",
                    ["setting", "value", "source"],
                    [[r["name"], _show(r["value"]), r["source"]] for r in rows],
                )
            )
            guard = "protected" if settings.is_protected else "not protected"
            console.print(f"environment {settings.environment!r} is {guard}")

        document: dict[str, Any] = {
            "valid": True,
            "environment": settings.environment,
            "protected": settings.is_protected,
            "settings": {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in rows},
        }
        out.emit(document, render)

    run(action, json_mode=json_output)


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["config"]
