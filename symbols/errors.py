"""The suite's one user-error type, defined in its lowest layer so that the networks import no project code.

A user's mistake (a bad flag value, a missing or corrupt file, a network asked for with arguments it cannot take)
raises UserError anywhere in the suite; the entry points catch it once (common.util.main_guard), print its one
line on stderr and exit with status 2. common.util re-exports both names: callers above this package use those.
"""


class UserError(Exception):
    """A mistake of the user's (bad flag, missing or corrupt file): one line on stderr, exit status 2."""


def choice_error(what, value, valid):
    """Return the UserError for an unknown string choice, listing the valid values."""
    return UserError(f"unknown {what} {value!r}; valid values: {', '.join(str(v) for v in valid)}")
