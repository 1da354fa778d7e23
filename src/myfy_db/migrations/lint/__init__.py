"""``myfy-db migrate lint``: judge what each revision will do on the URL's dialect.

The revisions run offline for the URL's dialect (:mod:`.capture`), every operation they
invoke is captured with its file and line, and each registered rule (:mod:`.registry`,
:mod:`.rules`) judges it against what the range did before it (:mod:`.state`). A
``# myfy-db: allow RULE-ID -- reason`` comment beside the operation accepts a finding
(:mod:`.allow`); it is still reported, marked accepted. With ``--dev-url`` the revisions
run online instead, on a scratch database, captured the same way (:mod:`.online`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from myfy_db.errors import ConfigError
from myfy_db.migrations.lint.model import CapturedOp, Finding, RangeState, Rule, Severity
from myfy_db.migrations.lint.registry import all_rules

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from myfy_db.migrations.project import MigrationProject
    from myfy_db.settings import LoadedSettings
    from myfy_db.urls import DatabaseUrl

__all__ = [
    "Finding",
    "LintReport",
    "Rule",
    "Severity",
    "all_rules",
    "judge",
    "lint",
    "parse_fail_on",
]

FAIL_ON = {"error": Severity.ERROR, "warning": Severity.WARNING, "info": Severity.INFO}


def parse_fail_on(value: str) -> Severity | None:
    """``error`` / ``warning`` / ``info`` -> a severity; ``never`` -> None."""
    key = value.strip().lower()
    if key == "never":
        return None
    if key not in FAIL_ON:
        raise ConfigError(f"--fail-on must be error, warning, info or never (got {value!r})")
    return FAIL_ON[key]


@dataclass
class LintReport:
    """The findings for the revisions of one range on one dialect."""

    database: str
    dialect: str
    range: str
    scope: str
    revisions: list[str]
    findings: list[Finding] = field(default_factory=list)

    def failing(self, fail_on: Severity | None) -> list[Finding]:
        """Findings at or above ``fail_on`` that no comment accepted."""
        if fail_on is None:
            return []
        return [
            f for f in self.findings if not (f.accepted or f.made_safe) and f.severity >= fail_on
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "dialect": self.dialect,
            "range": self.range,
            "scope": self.scope,
            "revisions": self.revisions,
            "findings": [f.to_dict() for f in self.findings],
        }


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def judge(
    ops: list[CapturedOp],
    models: dict[str, set[str]] | None = None,
    known_types: dict[tuple[str, str], Any] | None = None,
    made_safe: Callable[[str, CapturedOp], bool] | None = None,
    revision_types: dict[str, dict[tuple[str, str], Any]] | None = None,
) -> list[Finding]:
    """Every rule's findings for ``ops``, in the order the operations ran.

    ``made_safe(rule, op)`` (``--safe``: :func:`myfy_db.migrations.safe.fixes_for`) marks the
    findings that ``migrate --safe`` runs in their safe form.

    ``known_types`` are the column types before the range (the database's, else the
    models'): an ``alter_column`` without ``existing_type`` is judged against them.
    ``revision_types`` are the types a dev database showed before each revision's
    ``alter_column`` (``--dev-url``); they win over ``known_types`` from that revision on.
    """
    from myfy_db.migrations.lint.allow import allowed, check_comments, clear_cache
    from myfy_db.migrations.lint.state import advance

    clear_cache()
    state = RangeState(models=models, known_types=dict(known_types or {}))
    rules = all_rules()
    paths = {captured.path for captured in ops if captured.path != "?"}
    check_comments(paths, {rule.id for rule in rules}, {p: _relative(p) for p in paths})
    findings: list[Finding] = []
    revision = None
    for captured in ops:
        if captured.revision != revision:
            # Each revision is judged on its own, as it is deployed: a table or column is
            # new only inside the revision that created it (strong_migrations, squawk).
            revision = captured.revision
            state.created_tables.clear()
            state.added_columns.clear()
            state.known_types.update((revision_types or {}).get(revision, {}))
        for rule in rules:
            if not rule.applies_to(captured.dialect):
                continue
            detail = rule.check(captured, state)
            if detail is None:
                continue
            reason = allowed(captured.path, captured.line, rule.id)
            findings.append(
                Finding(
                    rule.id,
                    rule.name,
                    rule.severity,
                    captured.revision,
                    _relative(captured.path),
                    captured.line,
                    detail,
                    rule.breaks,
                    rule.safe,
                    accepted=reason is not None,
                    reason=reason,
                    made_safe=made_safe is not None and made_safe(rule.id, captured),
                )
            )
        advance(captured, state)
    return findings


def _made_safe(url: DatabaseUrl, safe: bool) -> Callable[[str, CapturedOp], bool] | None:
    """``--safe``: which findings ``migrate --safe`` runs in their safe form on ``url``."""
    if not safe:
        return None
    from myfy_db.migrations.safe import fixes_for

    return fixes_for(url.backend)


def _model_types(metadata: MetaData) -> dict[tuple[str, str], Any]:
    return {
        (table.name.lower(), column.name.lower()): column.type
        for table in metadata.tables.values()
        for column in table.columns
    }


async def _database_types(loaded: LoadedSettings) -> dict[tuple[str, str], Any]:
    """Every column's type in the database's default schema, reflected in one bulk call."""
    from sqlalchemy import Connection, inspect

    from myfy_db.engine import open_engine, translate_errors

    def reflect(connection: Connection) -> dict[tuple[str, str], Any]:
        columns = inspect(connection).get_multi_columns()
        return {
            (table.lower(), str(column["name"]).lower()): column["type"]
            for (_, table), found in columns.items()
            for column in found
        }

    url = loaded.settings.url
    with translate_errors(url, "migrate lint"):
        async with open_engine(loaded.settings, url) as engine, engine.connect() as connection:
            return await connection.run_sync(reflect)


def _model_columns(metadata: MetaData) -> dict[str, set[str]]:
    return {
        table.name.lower(): {c.name.lower() for c in table.columns}
        for table in metadata.tables.values()
    }


def _revisions_in(project: MigrationProject, revision_range: str) -> list[str]:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    lower, _, upper = revision_range.rpartition(":")
    try:
        walked = project.script().iterate_revisions(upper or "heads", lower or "base")
        return [s.revision for s in reversed(list(walked))]
    except (CommandError, RevisionError) as exc:
        raise ConfigError(f"bad revision range {revision_range!r}: {exc}") from None


async def lint(
    project: MigrationProject,
    loaded: LoadedSettings,
    revision_range: str | None = None,
    *,
    metadata: MetaData | None = None,
    offline: bool = False,
    dev_url: DatabaseUrl | None = None,
    safe: bool = False,
) -> LintReport:
    """Lint the revisions of ``revision_range`` (``FROM:TO``) for the URL's dialect.

    Without a range: the pending revisions. The database is read (nothing is written): one
    that cannot be reached is exit 4, as for every command, never a silent switch to
    offline linting. ``offline`` lints without it: the given range, or every revision.
    ``dev_url`` replays the chain on a scratch database on that server (:mod:`.online`), so
    that revisions which read the database are judged too; it is never the target.
    """
    from myfy_db.migrations.lint.capture import capture, dialect_family
    from myfy_db.migrations.revisions import alembic_errors

    settings = loaded.settings
    url = settings.url
    if dev_url is not None:  # refused before anything connects
        _check_dev_url(dev_url, loaded)
    script = project.script()
    heads = tuple(script.get_heads())
    current = None
    if not offline:  # loaded only here: offline lint needs no engine, guard or lock
        from myfy_db.migrations.commands import read_current

        current = await read_current(loaded, "migrate lint")
    if revision_range is not None:
        spec, scope = revision_range, "given range"
    else:
        if current is None:
            spec, scope = "base:heads", "every revision (--offline)"
        elif sorted(current) == sorted(heads):
            spec, scope = "", "pending revisions (none: the database is at head)"
        elif len(current) > 1:
            raise ConfigError(
                f"the database has several current revisions ({', '.join(current)})",
                hint="give the range to lint: myfy-db migrate lint FROM:TO",
            )
        else:
            spec, scope = f"{current[0] if current else 'base'}:heads", "pending revisions"
    dialect = dialect_family(url.backend)
    if dev_url is not None and spec:
        server = (
            "a scratch SQLite file"
            if dev_url.backend == "sqlite"
            else f"a scratch database on {dev_url.target.rsplit('/', 1)[0]}"
        )
        scope += f"; replayed on {server}"
    report = LintReport(url.target, dialect, spec or "-", scope, [])
    if not spec:
        return report
    revision_types = None
    with alembic_errors():
        report.revisions = _revisions_in(project, spec)
        start, _, end = spec.rpartition(":")
        alembic_range = end if start in ("", "base") else spec
        if dev_url is None:
            ops = capture(project, settings, settings.database_url, alembic_range)
        else:
            from myfy_db.migrations.lint.online import capture_online

            online = await capture_online(
                project,
                settings,
                dev_url,
                protect=[url, *settings.replicas],
                start=start or None,
                end=end or "heads",
                dialect=url.backend,
            )
            ops, revision_types = online.ops, online.types
    models = _model_columns(metadata) if metadata is not None else None
    known = _model_types(metadata) if metadata is not None else {}
    if not offline and revision_range is None and dev_url is None:
        # Pending revisions start where the database is: its types are the ones before
        # the range (a given range may already be applied, so its types would mislead).
        known.update(await _database_types(loaded))
    report.findings = judge(
        ops, models, known, revision_types=revision_types, made_safe=_made_safe(url, safe)
    )
    return report


def _check_dev_url(dev_url: DatabaseUrl, loaded: LoadedSettings) -> None:
    """The dev database must speak the target's dialect: lint judges on the target's."""
    from myfy_db.migrations.scratch import same_database

    target = loaded.settings.url
    if dev_url.backend != target.backend:
        raise ConfigError(
            f"--dev-url is a {dev_url.dialect} server but the database is {target.dialect}: "
            "the revisions are judged on the database's own dialect",
            hint=f"give --dev-url a {target.dialect} server",
        )
    if same_database(dev_url, target):
        raise ConfigError(
            f"--dev-url names the database itself ({target.target}): lint creates and drops "
            "a scratch database there, and the dev URL must never be the target",
            hint="point --dev-url at another database on a server you may create databases on",
        )
