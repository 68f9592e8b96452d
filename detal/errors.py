"""Project exceptions. The CLI turns a DetalError into one clear line on stderr and exit code 2."""


class DetalError(Exception):
    """A user-facing error: the message names the file/field and the fix."""


class ConfigError(DetalError):
    """Invalid configuration (unknown key, bad value)."""


class DataError(DetalError):
    """Invalid dataset content (missing files, bad label lines)."""


class LabelStudioError(DetalError):
    """Label Studio server or project problem."""


class BusyError(DetalError):
    """Another process holds the run folder's lock (detal.lock.exclusive)."""
