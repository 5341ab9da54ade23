"""User-facing errors. Each message says what went wrong and how to fix it; the CLI prints it and exits 2."""

from __future__ import annotations


class MiaBenchError(Exception):
    """Base of every error that is the user's input to fix (config, names, data), not a bug."""


class UnknownNameError(MiaBenchError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class ConfigError(MiaBenchError):
    pass


class SplitError(MiaBenchError):
    pass


class DataError(MiaBenchError):
    pass


class CheckpointError(MiaBenchError):
    pass


class AccessError(MiaBenchError):
    """An attack asked for more of the target than its declared access level allows."""
