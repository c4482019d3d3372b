"""The base of every error egress reports to a user as a message rather than a traceback."""


class EgressError(Exception):
    """An expected failure with a message fit for the user (bad input, config, state)."""
