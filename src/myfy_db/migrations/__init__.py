"""Alembic migrations, in-process, over the shared async engine factory.

- :mod:`.commands`: the ``migrate`` operations: upgrade, downgrade, reset, stamp, status,
  current, history, offline SQL.
- :mod:`.options`: :class:`~.options.RunOptions`, how one writing run behaves (lock timeout,
  ``--atomic``, retries, dry run, progress), built once at the edge.
- :mod:`.writing`: one writing run under the lock and the guard, its result read back.
- :mod:`.results`: what the operations return (runs, applied revisions, status).
- :mod:`.driving`: driving the project's own ``env.py`` on a live connection.
- :mod:`.environment`: what ``env.py`` takes from myfy-db (settings, URL, metadata, options).
- :mod:`.project`: finding a project's ``alembic.ini`` and building the ``Config`` in memory.
- :mod:`.revisions`: the revision graph: history, heads, branches, show, merge.
- :mod:`.autogenerate`: ``migrate new --autogenerate`` and ``migrate check``.
- :mod:`.lock`: the migration lock (advisory lock, ``GET_LOCK``, or a file lock).
- :mod:`.ddl_lock`: ``--ddl-lock-timeout`` and ``--retries``: each revision's lock wait.
- :mod:`.scaffold`: ``migrate init`` (and :mod:`.template`, the files it writes).
- :mod:`.lint`: ``migrate lint``, a registry of rules judging each revision.
- :mod:`.safe`: ``migrate --safe``: the revisions' operations rewritten into their
  non-blocking forms as they run (PostgreSQL, MySQL/MariaDB), and refused before anything
  runs where that is impossible.
- :mod:`.scratch`: a scratch database on a dev server (created empty, always dropped), and
  replaying the chain on it (``migrate lint --dev-url``, ``diff``).
- :mod:`.hooks`: Alembic's methods replaced for the length of a run and restored (lint's
  captures and ``--safe`` watch and rewrite revisions through them, never editing them).
"""

from __future__ import annotations

import sys


def _import_alembic() -> None:
    """Import Alembic without the syntax highlighter Mako loads for its HTML error pages.

    Alembic imports Mako (for ``script.py.mako``), and ``mako.exceptions`` imports Pygments
    at once when it is installed (rich brings it), only to colour the HTML error page of a
    failing template: about 20 ms of every migration command's start-up, for a page myfy-db
    never renders (a failing template is reported through Mako's text error template, which
    needs no Pygments). While Alembic loads, the highlighter's module reads as missing, so
    Mako takes its own plain fallback; the entry is removed again afterwards, and anything
    imported later (the shell's user code) finds Pygments as usual. Where Mako is already
    loaded, nothing changes.
    """
    highlighter = "mako.ext.pygmentplugin"
    blocked = "mako.exceptions" not in sys.modules and highlighter not in sys.modules
    if blocked:
        sys.modules[highlighter] = None  # type: ignore[assignment]
    try:
        import alembic  # noqa: F401
    finally:
        if blocked and sys.modules.get(highlighter, "") is None:
            del sys.modules[highlighter]


_import_alembic()
