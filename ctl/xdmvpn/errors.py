"""Errors a user can cause (bad input, missing privileges, missing kernel feature).

The CLI prints them as one line, never as a traceback.
"""


class XdmvpnError(Exception):
    """Base of every error the CLI reports as a one-line message."""
