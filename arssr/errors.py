"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class ArssrError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class InputError(ArssrError, ValueError):
    """A volume, option or path that arssr cannot work with."""


class ModelFileError(ArssrError):
    """A weights file that is missing, unreadable or does not match a known model."""


class OutputError(ArssrError):
    """An output that cannot be written: an unwritable place, a folder in its way, or one of the inputs."""


class OutputExistsError(OutputError):
    """An output file exists and overwriting was not asked for."""
