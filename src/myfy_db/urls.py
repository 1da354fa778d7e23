"""Database URLs: masking, secret redaction and driver checks.

Every URL myfy-db prints goes through :func:`mask_url`; every piece of text it writes goes
through :func:`redact`, which removes any password registered with :func:`register_secret`
(the settings loader registers the passwords of every URL it sees). The module is pure
string handling, so the CLI can use it without importing SQLAlchemy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

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


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``; safe on malformed input."""
    masked = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    masked = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{MASK}", masked)
    return redact(masked)


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` so that :func:`redact` removes it from any text."""
    if secret and len(secret) >= 3:
        _secrets.add(secret)
        quoted = secret.replace("@", "%40").replace(":", "%3A").replace("/", "%2F")
        if quoted != secret:
            _secrets.add(quoted)


def register_url_secret(url: str) -> None:
    """Register the password of ``url``, if it has one."""
    parts = split_url(url)
    if parts is not None:
        register_secret(parts.password)


def redact(text: str) -> str:
    """Remove every registered secret from ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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
