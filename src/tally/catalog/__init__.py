"""The catalog: apps, keys and (later) event definitions and lists."""

from tally.catalog.models import App, AppSettings, NewApp
from tally.catalog.store import Catalog, sqlite_url

__all__ = ["App", "AppSettings", "Catalog", "NewApp", "sqlite_url"]
