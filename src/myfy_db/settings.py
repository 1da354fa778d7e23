"""``DatabaseSettings``: the application's database configuration, read the way myfy reads it.

Sources, highest first: values passed in (the command line's flags), environment variables
(``MYFY_DATA_*``), a ``.env`` file (or the one named by ``--env-file``), the
``[tool.myfy-db]`` table of ``pyproject.toml`` in the working directory, then the defaults.
:func:`load_settings` also reports which source each effective value came from.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from myfy_db.errors import ConfigError
from myfy_db.url_checks import url_problem
from myfy_db.urls import (
    ASYNC_DRIVERS,
    SUPPORTED_SCHEMES,
    DatabaseUrl,
    async_url_for,
    mask_text,
    mask_url,
    redact,
    register_url_secret,
    split_url,
    split_url_list,
)

ENV_PREFIX = "MYFY_DATA_"
DEFAULT_URL = "sqlite+aiosqlite:///./myfy.db"
ALWAYS_PROTECTED = frozenset({"production", "prod"})
PYPROJECT_TABLE = ("tool", "myfy-db")
ENV_LABEL = "environment variable"
_URL_FIELDS = frozenset({"database_url", "replica_urls"})


def normalise_environment(name: str) -> str:
    """Trim and case-fold an environment name: `` Production `` is ``production``."""
    return name.strip().casefold()


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_url(url: str) -> str:
    url = _lower_scheme(url.strip())
    register_url_secret(url)
    parts = split_url(url)
    example = f"expected a URL such as {DEFAULT_URL}"
    if parts is None:
        if url[:1] in ("'", '"') and url[-1:] == url[:1]:
            example = "remove the quotes around the URL"
        raise ValueError(f"not a database URL; {example}")
    if parts.scheme in SUPPORTED_SCHEMES:
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url
    suggestion = async_url_for(url)
    if parts.backend in ASYNC_DRIVERS and suggestion is not None:
        raise ValueError(
            f"{parts.scheme}:// is a synchronous driver; use the async URL {mask_url(suggestion)}"
        )
    supported = ", ".join(sorted(SUPPORTED_SCHEMES))
    raise ValueError(f"unknown database driver {parts.scheme!r}; supported: {supported}")


def _lower_scheme(url: str) -> str:
    """URL schemes are case-insensitive (RFC 3986): ``POSTGRESQL+ASYNCPG://`` is read as
    ``postgresql+asyncpg://`` by every command alike."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme and all(c.isalnum() or c in "+.-" for c in scheme):
        return scheme.lower() + sep + rest
    return url


class DatabaseSettings(BaseSettings):
    """Database settings, configured exactly like a myfy application (``MYFY_DATA_*``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        pyproject_toml_table_header=PYPROJECT_TABLE,
        validate_default=True,
    )

    database_url: str = Field(DEFAULT_URL, description="Async SQLAlchemy database URL")
    pool_size: int = Field(5, ge=1, description="Connections kept in the pool")
    max_overflow: int = Field(10, ge=0, description="Extra connections beyond pool_size")
    pool_timeout: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="Seconds to wait for a connection"
    )
    pool_recycle: int = Field(
        3600, ge=-1, description="Seconds before a connection is replaced (-1: never)"
    )
    pool_pre_ping: bool = Field(True, description="Test connections before use")
    pool_use_lifo: bool = Field(False, description="Reuse the most recent connection first")
    connect_timeout: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="Seconds to wait when connecting"
    )
    ddl_lock_timeout: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds a migration waits for a table lock (0: no limit)",
    )
    safe_migrations: bool = Field(
        False,
        description="migrate runs operations in their non-blocking forms (as --safe does)",
    )
    echo: bool = Field(False, description="Log every SQL statement")
    environment: str = Field("development", description="Deployment environment")
    metadata: str | None = Field(
        None, description="module:attr naming a DeclarativeBase or MetaData"
    )
    replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated read replica URLs"
    )
    protected_environments: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["production"],
        description="Comma-separated environments the production guard protects",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            PyprojectTomlConfigSettingsSource(settings_cls),
        )

    @field_validator("database_url", mode="before")
    @classmethod
    def _validate_url(cls, value: Any) -> Any:
        return _check_url(value) if isinstance(value, str) else value

    @field_validator("replica_urls", mode="before")
    @classmethod
    def _validate_replicas(cls, value: Any) -> Any:
        if isinstance(value, str):  # a comma inside a password does not split the list
            value = split_url_list(value)
        if isinstance(value, list):
            return [_check_url(item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("protected_environments", mode="before")
    @classmethod
    def _split_protected(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            return [normalise_environment(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("environment", mode="after")
    @classmethod
    def _normalise_environment(cls, value: str) -> str:
        value = normalise_environment(value)
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("metadata", mode="after")
    @classmethod
    def _validate_metadata(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        module, sep, attr = value.strip().partition(":")
        if not sep or not module or not attr:
            raise ValueError("must be module:attr, e.g. myapp.models:Base")
        return value.strip()

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                yield name, mask_url(value)
            elif name == "replica_urls" and isinstance(value, list):
                yield name, [mask_url(str(v)) for v in value]
            else:
                yield name, value

    @property
    def is_protected(self) -> bool:
        """True when :attr:`environment` is protected by the production guard."""
        return is_protected_environment(self.environment, self.protected_environments)

    @property
    def url(self) -> DatabaseUrl:
        """:attr:`database_url` parsed (once per URL): pass this down, not the string."""
        return DatabaseUrl.parse(self.database_url)

    @property
    def replicas(self) -> tuple[DatabaseUrl, ...]:
        """:attr:`replica_urls`, each parsed."""
        return tuple(DatabaseUrl.parse(url) for url in self.replica_urls)

    @property
    def masked_url(self) -> str:
        """The database URL with its password hidden."""
        return mask_url(self.database_url)

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql``, ``mysql`` or ``mariadb``."""
        parts = split_url(self.database_url)
        return parts.backend if parts is not None else "unknown"


def is_protected_environment(environment: str, protected: list[str] | None = None) -> bool:
    """True when ``environment`` is ``production``, ``prod`` or in ``protected``."""
    extra = {normalise_environment(p) for p in protected or []}
    return normalise_environment(environment) in ALWAYS_PROTECTED | extra


FIELDS: tuple[str, ...] = tuple(DatabaseSettings.model_fields)


def env_var(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


@dataclass(frozen=True)
class UnknownName:
    """A ``MYFY_DATA_*`` name that is no setting (a typo), where it was set, the closest name."""

    name: str
    source: str
    suggestion: str | None

    def __str__(self) -> str:
        maybe = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"unknown setting {self.name} (from {self.source}){maybe}"


@dataclass(frozen=True)
class LoadedSettings:
    """Effective settings together with the source of every value."""

    settings: DatabaseSettings
    sources: dict[str, str]
    unknown: tuple[UnknownName, ...] = ()

    def source_of(self, field: str) -> str:
        """Where ``field`` was set, e.g. ``environment variable MYFY_DATA_ENVIRONMENT``."""
        return self.sources.get(field, "default")


@dataclass(frozen=True)
class SettingError:
    """One invalid setting: which, from where, the (masked) value and what is accepted."""

    field: str
    source: str
    value: str | None
    message: str

    def __str__(self) -> str:
        value = "" if self.value is None else f" = {self.value}"
        return f"invalid setting {self.field}{value} (from {self.source}): {self.message}"


class InvalidSettings(ConfigError):
    """One or more settings are invalid; :attr:`errors` lists each (and :attr:`unknown` the
    ``MYFY_DATA_*`` names that are no setting)."""

    def __init__(self, errors: list[SettingError], unknown: tuple[UnknownName, ...] = ()) -> None:
        first = str(errors[0])
        more = f" (and {len(errors) - 1} more: run `myfy-db config`)" if len(errors) > 1 else ""
        super().__init__(first + more)
        self.errors = errors
        self.unknown = unknown


def _source_labels(
    env_file: Path | None,
) -> list[tuple[str, Callable[[], PydanticBaseSettingsSource]]]:
    dotenv_path = env_file if env_file is not None else Path(".env")
    return [
        (ENV_LABEL, lambda: EnvSettingsSource(DatabaseSettings)),
        (
            f"env file {dotenv_path}",
            lambda: DotEnvSettingsSource(DatabaseSettings, env_file=dotenv_path),
        ),
        (
            "pyproject.toml [tool.myfy-db]",
            lambda: PyprojectTomlConfigSettingsSource(DatabaseSettings, Path("pyproject.toml")),
        ),
    ]


def _read_env_file(path: Path) -> dict[str, str]:
    """The names and values of the env file ``path``; a line python-dotenv cannot parse (it
    would skip it with a warning) is a :class:`ConfigError` naming the file and line."""
    import re

    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read settings from env file {path}: {exc}") from None
    names: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string
            named = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=", line)
            what = f" (setting {named[1]})" if named else ""
            raise ConfigError(
                f"cannot parse env file {path} line {binding.original.line}{what}",
                hint="write NAME=value; close every quote; a # starts a comment",
            )
        if binding.key is not None:
            names[binding.key] = binding.value or ""
    return names


def _unknown_names(env_file: Path) -> tuple[UnknownName, ...]:
    """``MYFY_DATA_*`` names in the environment and the env file that are no setting."""
    import difflib
    import os

    known = {env_var(field) for field in FIELDS}
    candidates = [(name, ENV_LABEL) for name in os.environ]
    if env_file.is_file():
        candidates += [(name, f"env file {env_file}") for name in _read_env_file(env_file)]
    found: list[UnknownName] = []
    for name, source in candidates:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
            found.append(UnknownName(name, source, close[0] if close else None))
    for key in _pyproject_keys():  # [tool.myfy-db] keys are setting names as they are
        if key not in FIELDS:
            close = difflib.get_close_matches(key, sorted(FIELDS), n=1, cutoff=0.6)
            found.append(
                UnknownName(key, "pyproject.toml [tool.myfy-db]", close[0] if close else None)
            )
    return tuple(found)


def _pyproject_keys() -> list[str]:
    """The keys of ``[tool.myfy-db]`` in ./pyproject.toml (none when there is no such table)."""
    import tomllib

    path = Path("pyproject.toml")
    if not path.is_file():
        return []
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("myfy-db", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # reading the settings reports a broken file
    return [str(key) for key in table] if isinstance(table, dict) else []


def _display_value(field: str, value: Any) -> str | None:
    """``value`` of an invalid setting as it may be shown: a URL-valued setting's value is
    never echoed, only masked (each URL of a list on its own; text that is no URL by its
    credentials, :func:`~myfy_db.urls.mask_text`)."""
    if value is None:
        return None
    if field in _URL_FIELDS:
        # Never echoed: an invalid URL is exactly the one whose password cannot be told
        # apart from its other parts. The error names the setting, its source and the fault.
        return None
    text = value if isinstance(value, str) else repr(value)
    return repr(redact(text)) if isinstance(value, str) else redact(text)


def _unechoed(message: str, field: str, value: Any) -> str:
    """A URL-valued setting's error, without any quoted piece of the URL's credentials
    (a "port" of an unparseable URL may be part of its password)."""
    if field not in _URL_FIELDS or value is None:
        return message
    text = value if isinstance(value, str) else repr(value)
    # What may hold a password: between the scheme and the last "@" (before the host).
    userinfo = text.split("://", 1)[-1].rpartition("@")[0]

    def hide(match: re.Match[str]) -> str:
        piece = match.group(1)
        return "'***'" if piece and piece in userinfo else match.group(0)

    return re.sub(r"'([^']*)'", hide, message)


def _masked(url: str) -> str:
    """An invalid URL as an error may show it: masked; and where it is too broken for the
    password to be told apart (``scheme://u:secret`` reads as a host and a port), only its
    scheme."""
    from myfy_db.url_checks import url_problem

    try:
        shown = mask_url(url)
    except Exception:  # whatever the text, it is shown masked by its text alone
        shown = mask_text(url)
    if shown == url.strip() and url_problem(url) is not None and "://" in url:
        return url.strip()[: url.strip().index("://") + 3] + "…"
    return shown


def _collect_sources(
    overrides: Mapping[str, Any], env_file: Path | None
) -> tuple[dict[str, str], dict[str, Any]]:
    found: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for field, value in overrides.items():
        found[field] = "command-line flag"
        raw[field] = value
    for label, make_source in _source_labels(env_file):
        try:
            values = make_source()()
        except Exception as exc:
            raise ConfigError(f"cannot read settings from {label}: {redact(str(exc))}") from None
        for field, value in values.items():
            if field in FIELDS and field not in found:
                found[field] = f"{label} {env_var(field)}" if label == ENV_LABEL else label
                raw[field] = value
    for field in ("database_url", "replica_urls"):
        if isinstance(raw.get(field), str):
            for url in split_url_list(str(raw[field])):
                register_url_secret(url)
    return found, raw


def load_settings(
    overrides: Mapping[str, Any] | None = None, env_file: str | Path | None = None
) -> LoadedSettings:
    """Read the effective settings and where each came from.

    ``overrides`` are values given on the command line (None values are ignored);
    ``env_file`` replaces ``./.env``. Raises :class:`InvalidSettings` (exit 2) naming each
    bad setting, its source and what it accepts; a password never appears in the message.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    not_settings = set(given) - set(FIELDS)
    if not_settings:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(not_settings))}")
    path = Path(env_file) if env_file is not None else None
    if path is not None and not path.is_file():
        raise ConfigError(f"env file not found: {path}", hint="check the --env-file path")
    dotenv_path = path if path is not None else Path(".env")
    if dotenv_path.is_file():
        _read_env_file(dotenv_path)
    unknown = _unknown_names(dotenv_path)
    sources, raw = _collect_sources(given, path)
    try:
        # The sources were read once above; validate exactly those values.
        settings = DatabaseSettings.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            errors.append(
                SettingError(
                    field=field,
                    source=sources.get(field, "default"),
                    value=_display_value(field, raw.get(field, err.get("input"))),
                    message=_unechoed(
                        redact(_explain(message, field)), field, raw.get(field, err.get("input"))
                    ),
                )
            )
        raise InvalidSettings(errors, unknown) from None
    return LoadedSettings(
        settings=settings, sources={f: sources.get(f, "default") for f in FIELDS}, unknown=unknown
    )


def _explain(message: str, field: str) -> str:
    info = DatabaseSettings.model_fields.get(field)
    if info is not None and info.annotation is bool:
        return f"{message} (accepted: true/false, 1/0, yes/no, on/off)"
    return message


def display_value(field: str, value: Any) -> Any:
    """``value`` as it may be shown: URLs masked, everything else unchanged."""
    if field == "database_url" and isinstance(value, str):
        return mask_url(value)
    if field == "replica_urls" and isinstance(value, list):
        return [mask_url(str(v)) for v in value]
    return value


def describe_settings(loaded: LoadedSettings) -> list[dict[str, Any]]:
    """Each effective setting with its (masked) value, source and environment variable."""
    return [
        {
            "name": field,
            "value": display_value(field, getattr(loaded.settings, field)),
            "source": loaded.source_of(field),
            "env_var": env_var(field),
        }
        for field in FIELDS
    ]
