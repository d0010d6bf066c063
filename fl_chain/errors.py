"""The one exception type users see: a message fit for a single line, no traceback."""


class FlchainError(Exception):
    """An error caused by input or environment that the user can fix; printed as one line."""
