"""Alembic migrations, in-process, over the shared async engine factory.

- :mod:`.project`: finding a project's ``alembic.ini`` and building the ``Config`` in memory.
- :mod:`.environment`: what ``env.py`` takes from myfy-db (settings, URL, metadata, options).
- :mod:`.lock`: the migration lock (advisory lock, ``GET_LOCK``, or a file lock).
- :mod:`.commands`: upgrade, downgrade, stamp, status, history, new, check, offline SQL.
- :mod:`.scaffold`: ``migrate init``.
"""
