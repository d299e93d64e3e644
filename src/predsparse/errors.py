"""One exception type per kind of user mistake.

Every message names the bad value and what would be valid. The CLI turns any `PredsparseError` into one
line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""


class PredsparseError(Exception):
    """Base of every error a user can cause with bad input."""


class PatternError(PredsparseError):
    """Invalid net, fan-outs, pattern options, or a malformed pattern file."""


class ScatterError(PredsparseError):
    """Invalid window shapes or junction ranges for the scatter metric."""


class DatasetError(PredsparseError):
    """A dataset cannot be generated, downloaded, verified or parsed."""


class ConfigError(PredsparseError):
    """An invalid pipeline config or run spec."""


class TrainingError(PredsparseError):
    """A training run that cannot proceed (e.g. a non-finite loss)."""


class TrackingError(PredsparseError):
    """An MLflow store that cannot be used."""


class ReportError(PredsparseError):
    """A summary, history, paper-numbers or run-info file the report cannot use."""


class OutputError(PredsparseError):
    """An output path that cannot be written: a directory where a file goes (or the reverse), no permission,
    a name too long."""
