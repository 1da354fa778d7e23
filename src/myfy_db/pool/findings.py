"""Findings: what a check saw, each with an id, a severity and a reason a person can act on.

``profile-pool`` and ``check-pool`` report them; :func:`failing` is the verdict at
``--fail-on``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from myfy_db.errors import ConfigError

__all__ = ["FAIL_ON_LEVELS", "SEVERITIES", "Finding", "Severity", "failing"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """Something a check saw: an id, a severity and a reason a person can act on."""

    id: str
    severity: Severity
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "reason": self.reason}


#: ``--fail-on`` levels: a finding at or above the level fails the check; ``never`` never.
FAIL_ON_LEVELS: tuple[str, ...] = ("error", "warning", "info", "never")
_RANK = {"info": 0, "warning": 1, "error": 2}


def failing(findings: Sequence[Finding], fail_on: str) -> list[Finding]:
    """The findings at or above ``fail_on`` (``error``, ``warning``, ``info``; ``never``: none).

    An unknown level is a :class:`ConfigError` (exit 2).
    """
    level = fail_on.strip().casefold()
    if level not in FAIL_ON_LEVELS:
        raise ConfigError(
            f"unknown --fail-on level {fail_on!r}; choose one of: {', '.join(FAIL_ON_LEVELS)}"
        )
    if level == "never":
        return []
    return [f for f in findings if _RANK[f.severity] >= _RANK[level]]
