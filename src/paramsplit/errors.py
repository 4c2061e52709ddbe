"""Errors a user can cause. The CLI turns each into one line on stderr and an exit code.

Every error subclasses `ValueError` as well, so callers of the Python API can catch either
(the scikit-learn convention).
"""

from __future__ import annotations


class ParamSplitError(ValueError):
    """Base class of every error caused by user input.

    `field` names the study field (or `train.SETTING`) at fault, where there is one, so that
    a study file can point at its line and the CLI at its flag.
    """

    exit_code = 1
    field: str | None = None

    def in_field(self, field: str) -> ParamSplitError:
        """The same error, its message prefixed by `field 'NAME': ` and `field` set."""
        located = type(self)(f"field '{field}': {self}")
        located.field = field
        return located


class UsageError(ParamSplitError):
    """Options that contradict each other or are missing."""

    exit_code = 2


class UnknownFamilyError(ParamSplitError):
    """A family name that is not registered."""


class SpecError(ParamSplitError):
    """A malformed architecture or design name, or a depth or width the family cannot have."""


class BudgetError(ParamSplitError):
    """An unparsable, non-positive or too large parameter budget, or one too small for any
    network."""


class InputShapeError(ParamSplitError):
    """An input shape or class count the families cannot take."""


class DatasetError(ParamSplitError):
    """An unknown dataset, a bad dataset path, or data files that are missing or malformed."""


class ConfigError(ParamSplitError):
    """A training setting out of range or of the wrong type, or one the hardware cannot
    honour."""


class StudyError(ParamSplitError):
    """A study that cannot run as a whole: too large, or with no feasible run."""


class StoreError(ParamSplitError):
    """A results database that cannot be opened or used: bad URL, missing file, newer schema,
    damaged file, unknown run."""


class StudyFileError(ParamSplitError):
    """A study file that cannot be read, is not valid TOML, or has a bad field."""


class ReportError(ParamSplitError):
    """A report that cannot be written where it was asked to go."""


class ClaimLostError(StoreError):
    """A write for a run that this worker no longer holds: another worker took it over (this
    one was paused past the stale-claim limit), or it was given back."""


class StoreWriteError(StoreError):
    """A write the database cannot take now (disk full, locked by another process, read-only);
    the study pauses, and the same command resumes it."""


class DiskFullError(ParamSplitError):
    """No space left to write a checkpoint: the study pauses, and the same command resumes it."""


class CheckpointError(ParamSplitError):
    """A checkpoint that cannot be used: unreadable, truncated, corrupt, or another run's."""


class ArtifactError(ParamSplitError):
    """A run's kept weights that are missing or altered, or an export that fails its checks."""
