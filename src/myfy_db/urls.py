"""Database URLs: masking, secret redaction and driver checks.

Every URL myfy-db prints goes through :func:`mask_url`; every piece of text it writes goes
through :func:`redact`, which removes any password registered with :func:`register_secret`
(the settings loader registers the passwords of every URL it sees). Passwords are found by
SQLAlchemy's own URL parser (``make_url``), so whatever SQLAlchemy connects with is what is
masked, whichever of ``/ ? # @ : %`` or space it contains, raw or URL-encoded. SQLAlchemy is
imported only when a URL is masked or registered; :func:`redact` is pure string handling,
so the CLI can use it without importing SQLAlchemy.

:class:`DatabaseUrl` is a URL parsed once (``DatabaseSettings.url``): SQLAlchemy's URL with
the backend, the database, whether it is in-memory SQLite and the masked text, passed down
to the engine factory, the migration lock, the pool checks and the reports as it is.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from myfy_db.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

MASK = "***"

#: The async drivers myfy-db supports, by backend.
ASYNC_DRIVERS: dict[str, str] = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
}
_ALIASES = {"postgres": "postgresql"}
SUPPORTED_SCHEMES = frozenset(ASYNC_DRIVERS.values())

_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@?#]*):(?P<pw>[^@/?#]*)@"
)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&#\s]*")
_secrets: set[str] = set()


@dataclass(frozen=True)
class UrlParts:
    """The parts of a URL myfy-db needs without parsing it with SQLAlchemy."""

    scheme: str
    backend: str
    driver: str | None
    password: str | None


def split_url(url: str) -> UrlParts | None:
    """Split ``url`` into scheme, backend, driver and password, or None when it is not a URL."""
    match = re.match(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://", url.strip())
    if match is None:
        return None
    scheme = match["scheme"].lower()
    backend, _, driver = scheme.partition("+")
    backend = _ALIASES.get(backend, backend)
    userinfo = _USERINFO.match(url.strip())
    password = unquote(userinfo["pw"]) if userinfo else None
    query_pw = re.search(r"(?i)[?&](?:password|passwd|pwd)=([^&#\s]*)", url)
    if password is None and query_pw:
        password = unquote(query_pw.group(1))
    return UrlParts(scheme, backend, driver or None, password)


_SECRET_KEYS = frozenset({"password", "passwd", "pwd"})
#: The scheme and everything up to the last ``@`` before the path: the user information,
#: however many ``@``, ``:``, ``/``, ``?`` or ``#`` it holds.
_AUTHORITY = re.compile(r"^(?P<scheme>\s*[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@")


def _parsed(url: str) -> Any:
    """SQLAlchemy's parse of ``url``, or None when SQLAlchemy cannot parse it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url.strip())
    except (ArgumentError, ValueError, TypeError):
        return None


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``; safe on malformed input.

    The password is the one SQLAlchemy's parser finds (and connects with), when it is the
    whole field between the user name and the last ``@``. A URL SQLAlchemy cannot parse, or
    one it reads another way (a raw ``@`` in the password, which SQLAlchemy ends at the
    first ``@``), is masked by its text (:func:`mask_text`): the whole user information up
    to the last ``@``, whatever its length.
    """
    register_url_secret(url)
    parsed = _parsed(url)
    if parsed is not None and _agrees(parsed, url):
        if parsed.password is not None:
            parsed = parsed.set(password=MASK)
        query = {
            key: (MASK if key.lower() in _SECRET_KEYS else value)
            for key, value in parsed.query.items()
        }
        if query != dict(parsed.query):
            parsed = parsed.set(query=query)
        text = str(parsed.render_as_string(hide_password=False))
        return redact(text.replace(_quoted_in_url(MASK), MASK))
    return mask_text(url)


#: What a URL's scheme looks like at the start of a text, also when it is mistyped:
#: quoted, bracketed, with a space before ``:`` or without it (``postgresql+asyncpg//``).
_SCHEMEISH = re.compile(r"^[\s\"'\[(]*[A-Za-z][A-Za-z0-9+.\-]*\s*:?\s*/+")


def _text_password(text: str) -> str | None:
    """The password field of ``text`` by the text rule of :func:`mask_text` (raw, as
    written), or None when the text has none."""
    at = text.rfind("@")
    scheme = _SCHEMEISH.match(text)
    if scheme is None or scheme.end() > at:
        return None
    _user, colon, password = text[scheme.end() : at].partition(":")
    return password if colon else None


def _agrees(parsed: Any, url: str) -> bool:
    """True when SQLAlchemy's password is the whole password field of ``url``'s text."""
    if "@" in (parsed.host or ""):
        return False
    written = _text_password(url.strip())
    if written is None:
        return parsed.password is None
    return parsed.password is not None and unquote(written) == unquote(str(parsed.password))


def mask_text(text: str) -> str:
    """``text`` that may hold a URL (parseable or not) with its credentials masked.

    Everything between the scheme (or what looks like one: ``scheme//``, ``scheme ://``, a
    quoted URL) and the last ``@`` is the user information: the user name before its first
    ``:`` stays, the rest becomes ``***``, as one field, never substrings. Text with an ``@``
    but nothing scheme-like before it has everything before its last ``@`` masked. Password
    parameters in a query are masked too. No part of the text is parsed as a URL.
    """
    at = text.rfind("@")
    masked = text
    if at >= 0:
        scheme = _SCHEMEISH.match(text)
        if scheme is not None and scheme.end() <= at:
            start = scheme.end()
            user, colon, _ = text[start:at].partition(":")
            userinfo = f"{user}:{MASK}" if colon else MASK
            masked = f"{text[:start]}{userinfo}{text[at:]}"
        else:
            masked = f"{MASK}{text[at:]}"
    masked = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", masked)
    return redact(masked)


_URL_START = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")


def split_url_list(value: str) -> list[str]:
    """The URLs of a list setting (``MYFY_DATA_REPLICA_URLS``): comma-separated, or a JSON
    array of strings (the form pydantic-settings reads a list in).

    A comma belongs to a password when what follows it does not start a URL and holds the
    ``@`` that ends the user information (or the text before it has no ``@`` yet), so
    ``u:pa,ss@h/db`` stays one URL.
    """
    import json

    text = value.strip()
    if text.startswith("["):
        with suppress(ValueError):
            items = json.loads(text)
            if isinstance(items, list) and all(isinstance(item, str) for item in items):
                return [item.strip() for item in items if item.strip()]
        return [text]
    pieces: list[str] = []
    for piece in text.split(","):
        if pieces and not _URL_START.match(piece) and ("@" in piece or "@" not in pieces[-1]):
            pieces[-1] = f"{pieces[-1]},{piece}"
        else:
            pieces.append(piece)
    return [piece.strip() for piece in pieces if piece.strip()]


def _quoted_in_url(secret: str) -> str:
    """``secret`` the way SQLAlchemy writes a password into a URL it renders."""
    from sqlalchemy.engine import URL

    rendered = URL.create("x", username="u", password=secret, host="h").render_as_string(
        hide_password=False
    )
    return str(rendered)[len("x://u:") : -len("@h")]


def _forms(secret: str) -> set[str]:
    """Every way ``secret`` may be written: raw, URL-encoded, in JSON, in a repr."""
    import json
    from urllib.parse import quote, quote_plus

    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(repr(secret)[1:-1])
    forms.add(secret.replace("@", "%40").replace(":", "%3A").replace("/", "%2F"))
    with suppress(Exception):  # an odd secret must not stop its other forms counting
        forms.add(_quoted_in_url(secret))
    return forms


def url_has_password(url: str) -> bool:
    """True when ``url`` carries a password (in its user information or its query)."""
    register_url_secret(url)
    parsed = _parsed(url)
    if parsed is not None:
        if parsed.password:
            return True
        return any(key.lower() in _SECRET_KEYS for key in parsed.query)
    authority = _AUTHORITY.match(url.strip())
    return authority is not None and ":" in authority["userinfo"]


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` so that :func:`redact` removes it from any text, in any form."""
    if secret and len(secret) >= 3 and secret != MASK:
        _secrets.update(form for form in _forms(secret) if len(form) >= 3)


def register_url_secret(url: str) -> None:
    """Register the password of ``url``, if it has one.

    That is the password SQLAlchemy's parser finds (decoded), the text it was written as,
    and, for a URL whose password holds a raw ``@``, everything up to the last ``@``.
    """
    text = url.strip()
    parsed = _parsed(text)
    if parsed is not None:
        register_secret(parsed.password)
        if parsed.host and not _agrees(parsed, text):
            # A raw "@" in the password: SQLAlchemy takes part of it for the host name.
            register_secret(parsed.host)
        for key, value in parsed.query.items():
            if key.lower() in _SECRET_KEYS:
                values = value if isinstance(value, tuple) else (value,)
                for item in values:
                    register_secret(str(item))
    authority = _AUTHORITY.match(text)
    if authority is not None and ":" in authority["userinfo"]:
        raw = authority["userinfo"].split(":", 1)[1]
        register_secret(raw)
        register_secret(unquote(raw))
        if "@" in raw:
            # SQLAlchemy's password ends at the first "@"; the rest is taken for the host
            # name and would be printed as one: it is a secret too.
            register_secret(raw.split("@", 1)[1])
    parts = split_url(text)
    if parts is not None:
        register_secret(parts.password)
    # A URL SQLAlchemy cannot read (quoted, ``scheme//``, ``scheme ://``) or reads another
    # way: its password is what :func:`mask_text` masks.
    written = _text_password(text)
    if written is not None and (parsed is None or not _agrees(parsed, text)):
        register_secret(written)
        register_secret(unquote(written))


def redact(text: str) -> str:
    """Remove every registered secret from ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def describe_target(url: str | DatabaseUrl) -> str:
    """``host:port/database`` (or the SQLite path) for messages; never the password."""
    if isinstance(url, DatabaseUrl):
        return url.target
    try:
        return DatabaseUrl.parse(url).target
    except ConfigError:
        return mask_url(url)


def async_url_for(url: str) -> str | None:
    """The async URL to use instead of a sync-driver ``url``; None when none is known."""
    parts = split_url(url)
    if parts is None or parts.backend not in ASYNC_DRIVERS:
        return None
    rest = url.strip().split("://", 1)[1]
    return f"{ASYNC_DRIVERS[parts.backend]}://{rest}"


def is_sqlite_memory(url: str) -> bool:
    """True when ``url`` names an in-memory SQLite database."""
    parts = split_url(url)
    if parts is None or parts.backend != "sqlite":
        return False
    rest = url.strip().split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return path in ("", ":memory:") or "mode=memory" in rest


# -- a URL parsed once ------------------------------------------------------------------

_NOT_A_URL = "not a valid database URL"
#: Backend families: MariaDB is told apart from MySQL only where SQLAlchemy does.
_FAMILIES = {"mariadb": "mysql"}


@dataclass(frozen=True, repr=False)
class DatabaseUrl:
    """A database URL, parsed once, with what myfy-db reads from it.

    Build it with :meth:`parse` (``DatabaseSettings.url`` does) and pass it down instead of
    the string. ``str()`` and ``repr()`` show :attr:`masked`: the password never shows.
    """

    #: SQLAlchemy's parse of the URL (what the engine connects with; holds the password).
    sqlalchemy_url: URL
    #: ``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included).
    backend: str
    #: SQLAlchemy's backend name: as :attr:`backend`, but ``mariadb`` for MariaDB.
    dialect: str
    #: The driver the URL names (``aiosqlite``, ``asyncpg``, ``aiomysql``), or None.
    driver: str | None
    #: True for an in-memory SQLite database.
    memory: bool
    #: The database name, or the SQLite file as the URL writes it (None when absent).
    database: str | None
    #: The URL with any password replaced by ``***``: the form that is printed.
    masked: str
    #: ``host:port/database`` or ``SQLite database PATH``, for messages.
    target: str
    #: What is structurally wrong with the URL (:func:`url_problem`), or None.
    problem: str | None

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        """Parse ``url`` (registering its password for :func:`redact`).

        Raises :class:`~myfy_db.errors.ConfigError` (exit 2) when SQLAlchemy cannot read it.
        """
        return _parse(url)

    @classmethod
    def of(cls, url: str | URL | DatabaseUrl) -> DatabaseUrl:
        """``url`` when it is parsed already, else its parse (a SQLAlchemy URL included)."""
        if isinstance(url, DatabaseUrl):
            return url
        if not isinstance(url, str):
            url = str(url.render_as_string(hide_password=False))
        return _parse(url)

    @property
    def sqlite_file(self) -> str | None:
        """The path of a SQLite database file (a ``file:`` URI's path without its query);
        None for an in-memory database or another backend."""
        if self.backend != "sqlite" or self.memory or not self.database:
            return None
        database = self.database
        if database.startswith("file:"):
            database = database.removeprefix("file:").split("?", 1)[0]
        return database

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.masked!r})"


@lru_cache(maxsize=64)
def _parse(url: str) -> DatabaseUrl:
    register_url_secret(url)
    parsed = _parsed(url)
    if parsed is None:
        from myfy_db.url_checks import url_problem

        # Not echoed: text SQLAlchemy cannot read has no password it could find and mask.
        problem = url_problem(url)
        detail = f": {redact(problem)}" if problem and problem != _NOT_A_URL else ""
        raise ConfigError(f"{_NOT_A_URL}{detail}")
    from myfy_db.url_checks import url_problem

    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        target = f"SQLite database {parsed.database or ':memory:'}"
    else:
        port = f":{parsed.port}" if parsed.port else ""
        target = f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"
        if not _agrees(parsed, url):
            # SQLAlchemy's host holds part of the password (a raw "@" in it): the target is
            # what follows the password field, masked as a whole.
            masked_text = mask_text(url)
            target = f"{MASK}{masked_text[masked_text.rfind('@') :]}"
    return DatabaseUrl(
        sqlalchemy_url=parsed,
        backend=_FAMILIES.get(dialect, dialect),
        dialect=dialect,
        driver=str(parsed.drivername).partition("+")[2] or None,
        memory=is_sqlite_memory(url),
        database=parsed.database,
        masked=mask_url(url),
        target=target,
        problem=url_problem(url),
    )
