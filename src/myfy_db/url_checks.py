"""Structural checks of a database URL, before any driver sees it: the scheme and driver,
the port, an IPv6 host's brackets, a NUL byte, and each query parameter against what the
driver takes. A problem is named without echoing a password (:func:`url_problem`).
"""

from __future__ import annotations

import re

from myfy_db.urls import _ALIASES, _NOT_A_URL, _text_password

# -- structural checks, before any driver sees the URL ----------------------------------

# The same shape SQLAlchemy's ``make_url`` reads, so the checks see the parts it will use.
_URL_SHAPE = re.compile(
    r"""^(?P<scheme>[\w+.\-]+)://
    (?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?$""",
    re.X | re.S,
)
_TRUE_FALSE = frozenset({"true", "yes", "on", "y", "t", "1", "false", "no", "off", "n", "f", "0"})
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SESSION_ATTRS = ("any", "primary", "standby", "read-write", "read-only", "prefer-standby")

#: What each backend accepts in a URL's query string: name -> kind (or the allowed values).
_QUERY_PARAMETERS: dict[str, dict[str, str | tuple[str, ...]]] = {
    "postgresql": {
        "ssl": _SSL_MODES,
        "target_session_attrs": _SESSION_ATTRS,
        "command_timeout": "seconds",
        "prepared_statement_cache_size": "count",
        "host": "text",
        "passfile": "text",
        "krbsrvname": "text",
        "gsslib": ("gssapi", "sspi"),
    },
    "mysql": {
        "charset": "charset",
        "connect_timeout": "seconds-int",
        "local_infile": "bool",
        "use_unicode": "bool",
        "client_flag": "count",
        "sql_mode": "text",
        "init_command": "text",
        "program_name": "text",
        "unix_socket": "text",
        "auth_plugin": "text",
        "ssl_ca": "text",
        "ssl_cert": "text",
        "ssl_key": "text",
        "ssl_capath": "text",
        "ssl_cipher": "text",
        "ssl_check_hostname": "bool",
    },
    "sqlite": {
        "uri": "bool",
        "timeout": "seconds",
        "isolation_level": ("deferred", "immediate", "exclusive"),
        "detect_types": "count",
        "check_same_thread": "bool",
        "cached_statements": "count",
    },
}
_QUERY_PARAMETERS["mariadb"] = _QUERY_PARAMETERS["mysql"]
#: SQLite URI parameters, passed on to SQLite itself with ``uri=true``.
_SQLITE_URI_PARAMETERS: dict[str, str | tuple[str, ...]] = {
    "mode": ("ro", "rw", "rwc", "memory"),
    "cache": ("shared", "private"),
    "immutable": "bool",
    "nolock": "bool",
    "psow": "bool",
    "vfs": "text",
    "modeof": "text",
}
_QUERY_ADVICE = {
    "sslmode": "asyncpg takes ssl=MODE (disable, prefer, require, verify-ca, verify-full)",
    "application_name": "asyncpg does not take it in the URL",
}


def url_problem(url: str) -> str | None:
    """What is structurally wrong with ``url`` (port, host, NUL byte, query), or None.

    Pure string checks on a URL whose scheme is already known to be supported, so a mistake
    is reported before any driver sees it (and fails in its own way). When SQLAlchemy reads
    part of the password field as the host, port or query (a raw ``@`` in it), the problem
    is said without echoing any part of the URL.
    """
    problem = _structural_problem(url)
    if problem is None or problem == _NOT_A_URL:
        return problem
    match = _URL_SHAPE.match(url)
    written = _text_password(url)
    if written is not None and (match is None or match["password"] != written):
        return (
            "the password holds a raw '@' (or '?', '/'), so part of it is read as the host, "
            "port or query; write the password URL-encoded (%40 for @)"
        )
    return problem


def _structural_problem(url: str) -> str | None:
    if "\x00" in url or "%00" in url:
        return "a NUL character (%00) in the URL"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        return "a control character in the URL"
    match = _URL_SHAPE.match(url)
    if match is None:
        return _NOT_A_URL
    scheme = match["scheme"].lower()
    backend = _ALIASES.get(scheme.partition("+")[0], scheme.partition("+")[0])
    host = match["host"] or ""
    if "[" in host or "]" in host or (match["port"] or "").count(":"):
        return "unclosed '[' in the host (write an IPv6 host as [::1]:5432)"
    if backend == "sqlite":
        if match["user"] is not None or host or match["ipv6host"] or match["port"] is not None:
            return (
                "a SQLite URL has no host or port; write sqlite+aiosqlite:///relative/path.db "
                "or sqlite+aiosqlite:////absolute/path.db"
            )
    elif match["port"] is not None:
        # Without an "@" the "port" may be a password (u:secret); with a raw "@" in the
        # password it holds part of one: then the port is not echoed.
        echo = "@" in url and "@" not in match["port"]
        problem = _port_problem(match["port"], echo=echo)
        if problem is not None:
            return problem
    if match["query"] is not None:
        return _query_problem(backend, match["query"])
    return None


def _port_problem(port: str, *, echo: bool = True) -> str | None:
    if not port.isascii() or not port.isdigit():
        if not echo:
            return "the port is not a number (a raw '@' or ',' in a password? write it %40, %2C)"
        return f"port {port!r} is not a number"
    if not 1 <= int(port) <= 65535:
        shown = str(int(port)) if echo else "number"
        return f"port {shown} is out of range (1-65535)"
    return None


def _query_problem(backend: str, query: str) -> str | None:
    from urllib.parse import parse_qsl

    accepted = _QUERY_PARAMETERS.get(backend, {})
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return f"malformed query string {query!r} (expected name=value&name=value)"
    names = [name for name, _ in pairs]
    uri_mode = backend == "sqlite" and any(
        name == "uri" and value.lower() in ("true", "1", "yes", "on") for name, value in pairs
    )
    for name, value in pairs:
        kind = accepted.get(name)
        if kind is None and uri_mode:
            kind = _SQLITE_URI_PARAMETERS.get(name)
        if kind is None:
            advice = _QUERY_ADVICE.get(name)
            known = ", ".join(sorted(accepted))
            return f"unknown URL parameter {name!r} for {backend}; " + (
                advice if advice else f"accepted: {known}"
            )
        if name != "host" and names.count(name) > 1:
            return f"URL parameter {name!r} is given more than once"
        problem = _value_problem(kind, value)
        if problem is not None:
            return f"URL parameter {name}={value!r}: {problem}"
    return None


def _value_problem(kind: str | tuple[str, ...], value: str) -> str | None:
    import math

    if isinstance(kind, tuple):
        if value.lower() not in kind:
            return f"expected one of {', '.join(kind)}"
        return None
    if kind == "bool" and value.lower() not in _TRUE_FALSE:
        return "expected true or false"
    if kind in ("count", "seconds-int"):
        if not value.isascii() or not value.isdigit():
            return "expected a whole number"
        if kind == "seconds-int" and int(value) == 0:
            return "expected a positive number of seconds"
    if kind == "seconds":
        try:
            seconds = float(value)
        except ValueError:
            return "expected a number of seconds"
        if not math.isfinite(seconds) or seconds <= 0:
            return "expected a positive, finite number of seconds"
    if kind == "charset" and not _is_mysql_charset(value):
        return "not a character set MySQL knows (e.g. utf8mb4)"
    return None


def _is_mysql_charset(name: str) -> bool:
    try:
        from pymysql.charset import charset_by_name  # type: ignore[import-untyped]
    except ImportError:  # the MySQL driver is not installed; the engine factory says so
        return True
    try:
        return charset_by_name(name.lower()) is not None
    except KeyError:
        return False
