"""Alembic's seams, taken for the length of a block and given back afterwards.

Lint's offline and online captures and ``migrate --safe`` watch or rewrite what the
project's revisions do without editing them: they replace a method of one of Alembic's
classes (``AbstractOperations.invoke``, a revision step's function) while a run is active.
This module is the one place that replaces and restores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def replaced(owner: type, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """``owner.name`` is ``replacement`` inside the block, and the original again after it,
    however the block ends."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


#: ``wrap(step, upgrade)``: what runs in place of a revision step's ``upgrade()``.
StepWrapper = Callable[[Any, Callable[..., Any]], Callable[..., Any]]


@contextmanager
def each_revision_step(wrap: StepWrapper) -> Iterator[None]:
    """Every revision step Alembic builds inside the block runs ``wrap(step, function)``
    in place of its own function (the revision's ``upgrade()`` or ``downgrade()``)."""
    from alembic.runtime.migration import RevisionStep

    original_init = RevisionStep.__init__

    def init(self: Any, *args: Any, **kw: Any) -> None:
        original_init(self, *args, **kw)
        function = self.migration_fn
        self.migration_fn = functools.wraps(function)(wrap(self, function))

    with replaced(RevisionStep, "__init__", init):
        yield
