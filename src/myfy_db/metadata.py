"""Loading the application's metadata from ``module:attr``.

The target may be a :class:`~sqlalchemy.MetaData`, a ``DeclarativeBase`` subclass (or any
class with a ``metadata`` attribute holding one). The working directory is importable, as
users expect. Every failure is a :class:`~myfy_db.errors.ConfigError` (exit 2) saying which
part failed.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData

from myfy_db.errors import ConfigError

HINT = "pass --metadata module:attr or set MYFY_DATA_METADATA (e.g. myapp.models:Base)"


@dataclass(frozen=True)
class LoadedMetadata:
    """The metadata named by ``spec`` and the mapped classes found with it."""

    spec: str
    metadata: MetaData
    models: dict[str, type[Any]]


def _import_target(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"metadata {spec!r} is not module:attr", hint=HINT)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"cannot import module {module_name!r} named by metadata {spec!r}",
                hint="check the module path; the working directory is importable",
            ) from None
        raise ConfigError(
            f"importing module {module_name!r} failed: No module named {exc.name!r}"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r} (metadata {spec!r})"
            ) from None
    return target


def _models_of(target: Any, metadata: MetaData) -> dict[str, type[Any]]:
    registry = getattr(target, "registry", None)
    models: dict[str, type[Any]] = {}
    for mapper in getattr(registry, "mappers", ()):
        cls = mapper.class_
        if getattr(cls, "metadata", None) is metadata:
            models[cls.__name__] = cls
    return dict(sorted(models.items()))


def load_metadata(spec: str | None) -> LoadedMetadata:
    """Import ``spec`` (``module:attr``) and return its metadata and mapped classes."""
    if not spec:
        raise ConfigError("no metadata is configured", hint=HINT)
    target = _import_target(spec)
    if isinstance(target, MetaData):
        return LoadedMetadata(spec, target, {})
    metadata = getattr(target, "metadata", None) if isinstance(target, type) else None
    if isinstance(metadata, MetaData):
        return LoadedMetadata(spec, metadata, _models_of(target, metadata))
    kind = target.__name__ if isinstance(target, type) else type(target).__name__
    raise ConfigError(
        f"metadata {spec!r} is {'class ' if isinstance(target, type) else 'a '}{kind}, "
        "not a DeclarativeBase subclass or a MetaData",
        hint=HINT,
    )
