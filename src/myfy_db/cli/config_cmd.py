"""``myfy-db config``: the effective settings, each with its source, password masked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from myfy_db.cli.options import EnvFileOption, JsonOption, MetadataOption, UrlOption
from myfy_db.cli.runtime import load, run
from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from myfy_db.cli.output import Output
    from myfy_db.settings import UnknownName


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
        from myfy_db.cli.output import table
        from myfy_db.settings import InvalidSettings, describe_settings

        problems: list[dict[str, Any]] = []
        try:
            loaded = load(url, env_file, warn_unknown=False, metadata=metadata)
        except InvalidSettings as invalid:
            problems = [_problem(e.field, e.source, e.value, e.message) for e in invalid.errors]
            problems += [_unknown_problem(u) for u in invalid.unknown]
            _invalid(out, problems)
        problems = [_unknown_problem(u) for u in loaded.unknown]
        if loaded.settings.metadata is not None:
            from myfy_db.metadata import load_metadata

            try:
                load_metadata(loaded.settings.metadata)
            except ConfigError as error:
                spec = loaded.settings.metadata
                source = loaded.source_of("metadata")
                problems.append(_problem("metadata", source, repr(spec), error.message))
        if problems:
            _invalid(out, problems)
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


def _problem(setting: str, source: str, value: str | None, message: str) -> dict[str, Any]:
    return {"setting": setting, "source": source, "value": value, "message": message}


def _unknown_problem(unknown: UnknownName) -> dict[str, Any]:
    maybe = f"did you mean {unknown.suggestion}?" if unknown.suggestion else "no such setting"
    return _problem(unknown.name, unknown.source, None, f"unknown setting; {maybe}")


def _invalid(out: Output, problems: list[dict[str, Any]]) -> NoReturn:
    """Report ``problems`` (in the JSON document too) and stop with exit 2."""

    def list_errors(_: Console) -> None:
        for problem in problems:
            value = "" if problem["value"] is None else f" = {problem['value']}"
            out.info(
                f"invalid setting {problem['setting']}{value} (from {problem['source']}): "
                f"{problem['message']}"
            )

    out.emit({"valid": False, "errors": problems}, list_errors)
    raise ConfigError(f"configuration is invalid ({len(problems)} setting(s))")


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["config"]
