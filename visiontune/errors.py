"""User-facing errors.

Anything a user can fix (a missing file, a bad option, a malformed search space) raises a
subclass of :class:`VisiontuneError` whose message is one line naming what is wrong and where.
The command line prints that line and exits non-zero, without a traceback.
"""


class VisiontuneError(Exception):
    """An error caused by user input; its message is shown as one line."""


class DataError(VisiontuneError):
    """A data set is missing, unreadable or inconsistent."""


class ConfigError(VisiontuneError):
    """A training configuration, option or search space is invalid."""


class SearchInterrupted(VisiontuneError):
    """A search stopped before its trials ended (Ctrl-C); its state is saved for --resume."""
