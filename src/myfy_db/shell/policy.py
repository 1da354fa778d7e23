"""What a sandboxed, read-only or record-protecting shell allows, and how it refuses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from myfy_db.errors import Refused

__all__ = ["LEAVE", "META", "READ_ONLY_HINT", "SANDBOX_NAME", "Policy", "StatementRefused"]

SANDBOX_NAME = "myfy-db shell (sandbox)"
LEAVE = "leave the sandbox to make changes permanent: run the shell with --no-sandbox"
READ_ONLY_HINT = "leave out --read-only to write (a read-only database role is the real boundary)"
META = "MYFY_DB_META"


class StatementRefused(Refused):
    """The shell refused a statement or call before it reached the server (exit 3)."""


@dataclass
class Policy:
    """What the shell's engine allows; the shell updates it as the sandbox opens and closes."""

    sandbox: bool = False
    read_only: bool = False
    #: The database's record is protected: the shell may not change ``myfy_db_meta``.
    protected_record: str | None = None
    #: The sandbox's connection is checked out: any other connection would escape it.
    sealed: bool = False
    #: The shell's own bookkeeping (opening, closing, checking the sandbox) runs unchecked.
    internal: int = 0
    #: The statement running now is SQLAlchemy's own savepoint (the session's commit).
    own: bool = False
    #: MySQL/MariaDB: the id of the sandbox's XA transaction while it is open.
    xid: str | None = None

    @contextlib.contextmanager
    def allowed(self) -> Iterator[None]:
        """The shell's own statements and connections: not checked."""
        self.internal += 1
        try:
            yield
        finally:
            self.internal -= 1

    @property
    def checking(self) -> bool:
        return self.internal == 0
