"""The traffic-tier table (DESIGN.md "Traffic tiers", ``seeds/002_*``) and judging against it.

:func:`assess_tiers` says, for every setting and every tier, whether the setting meets the
tier, and names the tier the configuration fits. What "meets" means (:class:`Requirement`):

* ``pool_size`` and ``max_overflow``: at least the tier's value ("20+" is ``>= 20``);
* ``pool_timeout`` and ``pool_recycle``: at most the tier's value (busier tiers fail fast and
  recycle sooner; ``pool_recycle = -1``, never, meets no tier);
* ``pool_pre_ping`` and ``pool_use_lifo``: must be on where the tier says ``true``; a tier
  that says ``false`` accepts either.

The configuration *fits* the highest tier all of whose requirements it meets; one that does
not even meet ``low`` fits none. :func:`shortfall` lists what falls short of a tier, and by
how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from myfy_db.errors import ConfigError
from myfy_db.settings import DatabaseSettings

Comparison = Literal["at_least", "at_most", "required_on"]


@dataclass(frozen=True)
class Requirement:
    """What one tier asks of one setting."""

    setting: str
    value: int | float | bool
    comparison: Comparison

    @property
    def label(self) -> str:
        """The requirement as the table shows it: ``20+``, ``<= 15``, ``true``, ``any``."""
        if self.comparison == "at_least":
            return f"{self.value}+"
        if self.comparison == "at_most":
            return f"<= {self.value}"
        return "true" if self.value else "any"

    def meets(self, actual: Any) -> bool:
        """True when ``actual`` satisfies this requirement."""
        if self.comparison == "at_least":
            return bool(actual >= self.value)
        if self.comparison == "at_most":
            if self.setting == "pool_recycle" and actual < 0:
                return False
            return bool(actual <= self.value)
        return bool(actual) or not self.value

    def gap(self, actual: Any) -> str | None:
        """How far ``actual`` falls short, in words; None when it meets the requirement."""
        if self.meets(actual):
            return None
        unit = " s" if self.setting in ("pool_timeout", "pool_recycle") else ""
        if self.comparison == "at_least":
            return f"{format_number(self.value - actual)}{unit} too few"
        if self.comparison == "at_most":
            if self.setting == "pool_recycle" and actual < 0:
                return "never recycles"
            return f"{format_number(actual - self.value)}{unit} too long"
        return "off"


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _tier(
    pool_size: int,
    max_overflow: int,
    pool_timeout: int,
    pool_recycle: int,
    pool_pre_ping: bool,
    pool_use_lifo: bool,
) -> tuple[Requirement, ...]:
    return (
        Requirement("pool_size", pool_size, "at_least"),
        Requirement("max_overflow", max_overflow, "at_least"),
        Requirement("pool_timeout", pool_timeout, "at_most"),
        Requirement("pool_recycle", pool_recycle, "at_most"),
        Requirement("pool_pre_ping", pool_pre_ping, "required_on"),
        Requirement("pool_use_lifo", pool_use_lifo, "required_on"),
    )


#: The traffic-tier table, lowest tier first (DESIGN.md "Traffic tiers", seeds/002_*).
TIERS: dict[str, tuple[Requirement, ...]] = {
    "low": _tier(5, 10, 60, 7200, False, False),
    "medium": _tier(10, 20, 30, 3600, True, False),
    "high": _tier(20, 40, 15, 1800, True, True),
}
TIER_NAMES: tuple[str, ...] = tuple(TIERS)
POOL_SETTINGS: tuple[str, ...] = tuple(r.setting for r in TIERS["low"])


def get_tier(name: str) -> tuple[Requirement, ...]:
    """The requirements of tier ``name``; :class:`ConfigError` (exit 2) for an unknown name."""
    key = name.strip().casefold()
    if key not in TIERS:
        raise ConfigError(f"unknown tier {name!r}; choose one of: {', '.join(TIER_NAMES)}")
    return TIERS[key]


@dataclass(frozen=True)
class SettingVerdict:
    """One setting beside every tier's requirement."""

    setting: str
    value: Any
    meets: dict[str, bool]
    required: dict[str, str]
    gaps: dict[str, str | None]


@dataclass(frozen=True)
class TierAssessment:
    """Each setting's verdict per tier, and the tier the configuration fits (None: below low)."""

    fits: str | None
    verdicts: list[SettingVerdict]


def assess_tiers(settings: DatabaseSettings) -> TierAssessment:
    """Judge ``settings`` against every tier; name the highest tier it fully meets."""
    verdicts = []
    for index, setting in enumerate(POOL_SETTINGS):
        value = getattr(settings, setting)
        reqs = {name: reqs[index] for name, reqs in TIERS.items()}
        verdicts.append(
            SettingVerdict(
                setting=setting,
                value=value,
                meets={name: r.meets(value) for name, r in reqs.items()},
                required={name: r.label for name, r in reqs.items()},
                gaps={name: r.gap(value) for name, r in reqs.items()},
            )
        )
    fits = None
    for name in TIER_NAMES:
        if all(v.meets[name] for v in verdicts):
            fits = name
    return TierAssessment(fits=fits, verdicts=verdicts)


@dataclass(frozen=True)
class Shortfall:
    """One setting that falls short of a tier."""

    setting: str
    value: Any
    required: str
    gap: str


def shortfall(settings: DatabaseSettings, tier: str) -> list[Shortfall]:
    """Each setting of ``settings`` that falls short of ``tier``, and by how much."""
    result = []
    for requirement in get_tier(tier):
        value = getattr(settings, requirement.setting)
        gap = requirement.gap(value)
        if gap is not None:
            result.append(Shortfall(requirement.setting, value, requirement.label, gap))
    return result
