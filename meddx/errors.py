"""Errors meddx raises for bad input: each names the file, row or field and what is wrong."""


class MeddxError(Exception):
    """Base class: the CLI prints these as one clear message and exits non-zero."""


class DataError(MeddxError):
    """A data file, row or value that cannot be used as given."""


class ConfigError(MeddxError):
    """A configuration that cannot be satisfied."""


class LeakageError(MeddxError):
    """The same patient or image sits on two sides of a split."""
