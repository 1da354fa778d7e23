"""The rule registry: every rule module registers its rules here with :func:`rule`."""

from __future__ import annotations

from collections.abc import Callable

from myfy_db.migrations.lint.model import Check, Rule, Severity

RULES: dict[str, Rule] = {}

POSTGRESQL = ("postgresql",)
MYSQL = ("mysql",)
ALL: tuple[str, ...] = ()


def rule(
    id: str,
    name: str,
    *,
    severity: Severity,
    dialects: tuple[str, ...],
    summary: str,
    breaks: str,
    safe: str,
) -> Callable[[Check], Check]:
    """Register the decorated check function as rule ``id``."""

    def register(check: Check) -> Check:
        if id in RULES:
            raise ValueError(f"rule {id} registered twice")
        RULES[id] = Rule(id, name, severity, dialects, summary, breaks, safe, check)
        return check

    return register


def all_rules() -> list[Rule]:
    """Every rule, in id order (the rule modules are imported on first use)."""
    from myfy_db.migrations.lint import rules  # noqa: F401 - registers the rules

    return [RULES[key] for key in sorted(RULES)]
