"""The command-line interface: thin Typer commands over :mod:`crmcli.services`."""
