"""The myfy-db command line (a thin layer over the library)."""

from myfy_db.cli.app import app, main

__all__ = ["app", "main"]
