"""``myfy-db shell`` and ``myfy-db dbshell``: a live async session, safe to open on production.

- :mod:`.session`: the engine, the ``session`` and the namespace; the database's record.
- :mod:`.sandbox`: the sandbox and read-only mode (one connection, the server as boundary).
- :mod:`.policy`: what the shell allows, and its one-line refusal.
- :mod:`.refusals`: reading a statement before it reaches the server.
- :mod:`.pg_statements`: PostgreSQL's own parser (pglast) judging each statement.
- :mod:`.running`: the user's code with top-level ``await``, through the greenlet bridge.
- :mod:`.console`: the interactive console (and IPython, ptpython).
- :mod:`.helpers`: ``describe()``, ``tables()`` and the other helpers at the prompt.
- :mod:`.display`: how values, rows and tables print.
- :mod:`.errors`: what the user's code raised, in one or two lines.
- :mod:`.dbshell`: the database's own client (``psql``, ``mariadb``, ``sqlite3``).

Nothing is imported here: the CLI loads the part it needs.
"""
