"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class ArssrError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class InputError(ArssrError, ValueError):
    """A volume, option or path that arssr cannot work with."""


class ModelFileError(ArssrError):
    """A weights file that is missing, unreadable or does not match a known model."""


class OutputExistsError(ArssrError):
    """An output file exists and overwriting was not asked for."""
