"""Pool profiling: judge a pool configuration against the traffic tiers and the server.

The package keeps one concern per module:

* :mod:`~myfy_db.pool.profile.tiers`: the traffic-tier table as data, :func:`assess_tiers`
  and :func:`shortfall`;
* :mod:`~myfy_db.pool.profile.server`: :class:`ServerFacts`, the server's connection limits
  and idle timeouts, read by :func:`fetch_server_facts`;
* :mod:`~myfy_db.pool.profile.findings`: what the table alone cannot see, each a
  :class:`Finding` with an id and a severity, and the verdict at ``--fail-on``;
* :mod:`~myfy_db.pool.profile.load`: :func:`run_load` drives the pool with concurrent short
  queries through real checkouts and measures the checkout wait.
"""

from __future__ import annotations

from myfy_db.pool.findings import FAIL_ON_LEVELS, SEVERITIES, Finding, Severity, failing
from myfy_db.pool.profile.findings import Traffic, find_issues
from myfy_db.pool.profile.load import (
    LoadReport,
    after_load,
    histogram,
    load_findings,
    percentile,
    run_load,
)
from myfy_db.pool.profile.server import MYSQL_DEFAULT_WAIT_TIMEOUT, ServerFacts, fetch_server_facts
from myfy_db.pool.profile.tiers import (
    TIER_NAMES,
    TIERS,
    Requirement,
    SettingVerdict,
    Shortfall,
    TierAssessment,
    assess_tiers,
    get_tier,
    shortfall,
)

__all__ = [
    "FAIL_ON_LEVELS",
    "MYSQL_DEFAULT_WAIT_TIMEOUT",
    "SEVERITIES",
    "TIERS",
    "TIER_NAMES",
    "Finding",
    "LoadReport",
    "Requirement",
    "ServerFacts",
    "SettingVerdict",
    "Severity",
    "Shortfall",
    "TierAssessment",
    "Traffic",
    "after_load",
    "assess_tiers",
    "failing",
    "fetch_server_facts",
    "find_issues",
    "get_tier",
    "histogram",
    "load_findings",
    "percentile",
    "run_load",
    "shortfall",
]
