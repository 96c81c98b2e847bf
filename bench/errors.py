"""Errors meant for users: one sentence saying what was wrong and what is valid."""


class UsageError(ValueError):
    """Bad input from the user (unknown name, out-of-range value, mismatched weights).

    The CLI and the pytest plugin print its message as one line and exit non-zero; it is
    never shown as a traceback.
    """
