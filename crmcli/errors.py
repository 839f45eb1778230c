"""Domain errors. Each one is a single line a user can act on (exit code 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class CrmError(Exception):
    """Base class: an error the user can fix.

    ``message`` says what is wrong in the domain's words. The layers below the CLI
    leave ``hint`` (the next step) out and say what the error is about instead:
    ``subject`` and ``key``, a kind of record and which one ("customer", 12) or a
    thing such as a file's "encoding"; and ``fields``, the inputs at fault, named
    as the keyword arguments they came in. From these the CLI names its own
    command or flag to try next (crmcli/cli/hints.py), so the rules never speak
    of flags.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        subject: str | None = None,
        key: object = None,
        fields: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.subject = subject
        self.key = key
        self.fields = tuple(fields)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class NotFound(CrmError):
    """A customer, interaction or other record does not exist."""


class Conflict(CrmError):
    """The change would duplicate or contradict an existing record."""


class Invalid(CrmError):
    """A value is malformed or out of range."""


class ConfigError(CrmError):
    """The config file is unreadable or holds an unknown key or bad value."""


class DatabaseError(CrmError):
    """The database cannot be opened, upgraded or used."""


class ImportFailed(CrmError):
    """A CSV import was refused; ``problems`` lists each bad row."""

    def __init__(self, message: str, problems: list[tuple[int, str]], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.problems = problems


class MissingExtra(CrmError):
    """An optional part of crmcli is not installed (``pip install 'crmcli[extra]'``)."""
