"""Errors meddx raises for bad input: each names the file, row or field and what is wrong."""


class MeddxError(Exception):
    """Base class: the CLI prints these as one clear message and exits non-zero."""


class DataError(MeddxError):
    """A data file, row or value that cannot be used as given."""


class NotInData(DataError):
    """A data setting that points at nothing in this data: a column it lacks, or a patient regex none of its file
    names follow; `field` names the setting and `why` says what is missing (new data read with a run's settings may
    be laid out otherwise)."""

    def __init__(self, message: str, field: str, why: str):
        super().__init__(message)
        self.field, self.why = field, why


class ConfigError(MeddxError):
    """A configuration that cannot be satisfied."""


class LeakageError(MeddxError):
    """The same patient or image sits on two sides of a split."""


def not_found(what: str, path: object) -> str:
    """'<what> not found: <path>', saying where a relative path was looked for (YAML paths are read from the folder
    meddx runs in, not the YAML's)."""
    from pathlib import Path

    where = "" if Path(str(path)).is_absolute() else f" (a relative path: looked for from {Path.cwd()})"
    return f"{what} not found: {path}{where}"


class MeddxWarning(UserWarning):
    """meddx's own warning about a run (a collapse seen in training): shown as one WARNING line, no source line."""
