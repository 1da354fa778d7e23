"""How one writing ``migrate`` run behaves: one frozen value, built once from the flags and
the settings at the edge, and passed down unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from myfy_db.migrations.ddl_lock import DdlLock

if TYPE_CHECKING:
    from myfy_db.migrations.results import AppliedRevision
    from myfy_db.settings import DatabaseSettings

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_OPTIONS",
    "ONLINE_DDL_TOOLS",
    "Progress",
    "PtOscOptions",
    "Reporter",
    "RunOptions",
]

Progress = Callable[["AppliedRevision"], None]
Reporter = Callable[[str], None]
#: Seconds a run waits for the migration lock (``--lock-timeout``).
DEFAULT_LOCK_TIMEOUT = 60.0


#: ``--online-ddl`` values that name a tool (``none`` is carried as None).
ONLINE_DDL_TOOLS = ("pt-osc",)


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class PtOscOptions:
    """What ``--online-ddl pt-osc`` passes through to pt-online-schema-change (None: its
    own default)."""

    #: ``--max-lag`` seconds: pause the copy while a replica lags more.
    max_lag: float | None = None
    #: ``--chunk-time`` seconds each chunk of the copy aims for.
    chunk_time: float | None = None
    #: ``--critical-load``, e.g. ``Threads_running=50``: abort above it.
    critical_load: str | None = None

    @property
    def given(self) -> bool:
        """True when any of the three was given."""
        return any(v is not None for v in (self.max_lag, self.chunk_time, self.critical_load))


@dataclass(frozen=True)
class RunOptions:
    """``--lock-timeout``, ``--atomic``, ``--retries``, ``--dry-run``, ``--safe``,
    ``--online-ddl`` and where progress goes.

    The DDL lock timeout is a setting (``ddl_lock_timeout``; the ``--ddl-lock-timeout`` flag
    sets it), so every writing path, the library's included, applies it:
    :meth:`ddl_lock` builds the policy from the settings.
    """

    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    atomic: bool = False
    #: Retry a revision that failed only on the DDL lock timeout, up to this many times.
    retries: int = 0
    #: ``down``: list what would be undone and change nothing.
    dry_run: bool = False
    #: Called once per revision applied (or undone, or stamped), after it committed.
    progress: Progress | None = None
    #: One line of what the run is doing (waiting for a lock, retrying).
    report: Reporter = _quiet
    #: ``--safe``: run the revisions' operations in their non-blocking forms
    #: (:mod:`myfy_db.migrations.safe`). None: the ``safe_migrations`` setting decides.
    safe: bool | None = None
    #: ``--online-ddl``: ``"pt-osc"`` runs the ALTERs that need a table copy through
    #: pt-online-schema-change (MySQL/MariaDB); None: the server's own online DDL.
    online_ddl: str | None = None
    #: ``--max-lag``, ``--chunk-time``, ``--critical-load`` for ``--online-ddl pt-osc``.
    pt_osc: PtOscOptions = field(default_factory=PtOscOptions)

    def is_safe(self, settings: DatabaseSettings) -> bool:
        """``--safe`` as given, else the ``safe_migrations`` setting."""
        return self.safe if self.safe is not None else bool(settings.safe_migrations)

    def ddl_lock(self, settings: DatabaseSettings) -> DdlLock:
        """The DDL lock-timeout policy for a run against ``settings``."""
        return DdlLock.for_run(settings, self.retries, self.report)


#: The options of a run given none: the defaults above.
DEFAULT_OPTIONS = RunOptions()
