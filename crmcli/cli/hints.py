"""What to do next after an error: the CLI's knowledge of its own commands and flags, in one place.

Services raise errors in the domain's words and say what they are about (a record's
``subject`` and ``key``, the input ``fields`` at fault); the root command's error
handler asks :func:`next_step` for the hint printed after the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typer.core import TyperArgument, TyperOption

from crmcli.errors import Conflict, CrmError, DatabaseError, ImportFailed, Invalid, MissingExtra, NotFound

# Ordered: the first entry whose error class and subject match gives the hint
# (a subject of None matches any); ``{key}`` is the record the error is about.
NEXT_STEPS: list[tuple[type[CrmError], str | None, str]] = [
    (NotFound, "customer", "give an id, email, phone, ref or referral code; see 'crmcli customer list'"),
    (NotFound, "coupon", "see 'crmcli coupon list'"),
    (NotFound, "purchase", "see 'crmcli purchase list'"),
    (NotFound, "interaction", "see 'crmcli interaction list'"),
    (NotFound, "referral", "see 'crmcli referral list'"),
    (Conflict, "customer", "see 'crmcli customer show {key}'"),
    (Conflict, "demo", "run it on its own database: crmcli --db demo.db demo"),
    (
        ImportFailed,
        "duplicates",
        "fix them; for the duplicates pass --on-duplicate skip or update; or pass --skip-invalid FILE "
        "to import the good rows",
    ),
    (
        ImportFailed,
        "before-sales",
        "moving a shop, whose sales come next: pass --before-sales, then import the purchases; "
        "else fix them, or pass --skip-invalid FILE to import the good rows",
    ),
    (ImportFailed, None, "fix them, or pass --skip-invalid FILE to import the good rows"),
    (
        Invalid,
        "hand-redemption",
        "the redemption came with 'points import --before-sales': import all of the customer's sales in one "
        "file, or give what it lacks with an 'adjust' row dated before it in a points file",
    ),
    (CrmError, "columns", "rename with --map CSVCOL=FIELD, ignore with --map CSVCOL="),
    (CrmError, "encoding", "pass --encoding, for example utf-8, gb18030, big5, shift_jis or cp1252"),
    (DatabaseError, "folder", "create it, or pass --db with another path"),
    (MissingExtra, "analytics", "pip install 'crmcli[analytics]'"),
    (MissingExtra, "excel", "pip install 'crmcli[excel]'"),
    (DatabaseError, "lock", "try again when it is done, or raise lock_timeout_seconds in the config file"),
    (Conflict, "copy-target", "copy into a new, empty database"),
    (Invalid, "copy-target", "copy into a new, empty database"),
    (Conflict, "existing-file", "pass --force to replace it"),
    (Conflict, "protected-file", "write to another file"),
    (Invalid, "target-folder", "give a file name inside that folder"),
    (Invalid, "missing-folder", "create the folder first"),
]


def next_step(exc: CrmError, command: Any = None) -> str | None:
    """The hint for an error raised while ``command`` ran: the error's own, a command
    to run next, or the command's flags for the inputs at fault."""
    if exc.hint:
        return exc.hint
    for kind, subject, text in NEXT_STEPS:
        if isinstance(exc, kind) and subject in (None, exc.subject):
            return text.format(key=exc.key)
    flags = flags_for(exc.fields, command)
    return f"check {_join(flags)}" if flags else None


def flags_for(fields: Sequence[str], command: Any) -> list[str]:
    """How a Typer ``command`` spells each field: its long option (``--min-spend``) or its
    argument (``STAGE``). A field is named as the keyword argument that carries it, and
    the command's parameter of the same name takes it from the user."""
    params = {param.name: param for param in getattr(command, "params", ())}
    flags = []
    for name in fields:
        param = params.get(name)
        if isinstance(param, TyperOption):
            flags.append(max(param.opts, key=len))
        elif isinstance(param, TyperArgument):
            flags.append(param.metavar or param.name.upper())
    return flags


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
