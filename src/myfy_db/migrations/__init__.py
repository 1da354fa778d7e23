"""Alembic migrations, in-process, over the shared async engine factory.

- :mod:`.project`: finding a project's ``alembic.ini`` and building the ``Config`` in memory.
- :mod:`.environment`: what ``env.py`` takes from myfy-db (settings, URL, metadata, options).
- :mod:`.lock`: the migration lock (advisory lock, ``GET_LOCK``, or a file lock).
- :mod:`.commands`: upgrade, downgrade, stamp, status, history, new, check, offline SQL.
- :mod:`.scaffold`: ``migrate init``.
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
