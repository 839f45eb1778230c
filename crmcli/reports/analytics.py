"""The ``analytics`` extra (numpy, scipy): checked before a report that needs it, with a message naming it."""

from __future__ import annotations

import importlib.util

from crmcli.errors import MissingExtra


def require_analytics(what: str) -> None:
    """Raise :class:`MissingExtra` unless numpy and scipy import."""
    try:
        import numpy  # noqa: F401
        import scipy  # noqa: F401
    except ImportError:
        raise MissingExtra(f"{what} needs the analytics extra (numpy and scipy)", subject="analytics") from None


def analytics_installed() -> bool:
    """Whether the extra is there, without paying for importing it."""
    return all(importlib.util.find_spec(name) is not None for name in ("numpy", "scipy"))
