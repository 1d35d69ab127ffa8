"""User-facing errors: the CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class BenchError(Exception):
    """A problem with the user's input (bad name, bad file, bad option); never a bug."""


class ConfigError(BenchError):
    """Unknown or ill-typed configuration key."""


class RegistryError(BenchError):
    """Unknown name or a clash between two registered plugins."""


class DataError(BenchError):
    """A dataset file or folder that cannot be used; the message names the file."""


class TrainingDiverged(BenchError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


class UnsafePath(BenchError):
    """A results or cache path that is a symbolic link, a special file or leads outside its root."""


class LockError(UnsafePath):
    """A lock file that cannot be used (a planted link or special file)."""
