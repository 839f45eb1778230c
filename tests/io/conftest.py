"""The database fixtures of the service tests (SQLite, and PostgreSQL when a server is named)."""

from tests.services.conftest import backend  # noqa: F401
