"""Domain rules. Functions take a session and typed arguments, return models or
plain data, and raise :mod:`crmcli.errors`; they know nothing of the CLI."""
