"""The rules, one small function each, registered by importing their modules."""

from myfy_db.migrations.lint.rules import common, mysql, postgresql, sqlite

__all__ = ["common", "mysql", "postgresql", "sqlite"]
