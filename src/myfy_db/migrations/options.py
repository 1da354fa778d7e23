"""How one writing ``migrate`` run behaves: one frozen value, built once from the flags and
the settings at the edge, and passed down unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from myfy_db.migrations.ddl_lock import DdlLock

if TYPE_CHECKING:
    from myfy_db.migrations.results import AppliedRevision
    from myfy_db.settings import DatabaseSettings

__all__ = ["DEFAULT_LOCK_TIMEOUT", "DEFAULT_OPTIONS", "Progress", "Reporter", "RunOptions"]

Progress = Callable[["AppliedRevision"], None]
Reporter = Callable[[str], None]
#: Seconds a run waits for the migration lock (``--lock-timeout``).
DEFAULT_LOCK_TIMEOUT = 60.0


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RunOptions:
    """``--lock-timeout``, ``--atomic``, ``--retries``, ``--dry-run`` and where progress goes.

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

    def ddl_lock(self, settings: DatabaseSettings) -> DdlLock:
        """The DDL lock-timeout policy for a run against ``settings``."""
        return DdlLock.for_run(settings, self.retries, self.report)


#: The options of a run given none: the defaults above.
DEFAULT_OPTIONS = RunOptions()
