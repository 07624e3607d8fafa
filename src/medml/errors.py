"""The exception hierarchy. Every error a user can meet says what was wrong and what to do.

The CLI prints ``str(error)`` on one line and exits with code 2 for any :class:`MedmlError`.
"""

from __future__ import annotations


class MedmlError(Exception):
    """Base class: ``what`` went wrong and ``fix``, what the user can do about it."""

    exit_code = 2

    def __init__(self, what: str, fix: str = "") -> None:
        self.what = what
        self.fix = fix
        super().__init__(what)

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}" if self.fix else self.what


class InputFileError(MedmlError):
    """A file is missing, empty, unreadable or of the wrong format."""


class DataError(MedmlError):
    """The data cannot serve the task: missing or wrong columns, one class, text in a numeric column."""


class LeakageError(DataError):
    """A split or a feature would leak information from the outcome or across patients."""


class ConfigError(MedmlError):
    """A setting, option or spec file is invalid (an unknown model name, a bad YAML spec)."""


class NotFoundError(MedmlError):
    """A dataset, model or version that does not exist."""


class IntegrityError(MedmlError):
    """A stored artefact failed its integrity check (a model bundle whose hash does not match)."""


QUOTE_LIMIT = 80


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``value`` as an error message quotes it: ``repr`` (so a newline cannot break the one line), and past
    ``limit`` characters only its start and its length, ``'xxxx…' (20,000,000 characters)``: a message must not
    echo a whole 20 MB cell, file name or request field back at the user."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` unquoted, for a list in a message (``columns: age, sex``), shortened as :func:`quote` does; with a
    control character in it (a newline would break the one line) it is escaped."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else f"{shown[:limit]}… ({len(text):,} characters)"


class MonitorError(MedmlError):
    """Monitoring cannot proceed: a model without a reference profile, a window or stream that cannot be read."""
