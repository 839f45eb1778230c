"""crmcli: a customer-relationship manager for small businesses, in the terminal."""

__version__ = "0.1.0"
