"""The one exception family of edgeasc; the CLI turns each into a one-line message and an exit code."""


class EdgeAscError(Exception):
    """Base class of every expected, user-facing error.

    Attributes:
        exit_code: the CLI exit code (2 = bad usage or unreadable input, 1 = a domain failure).
    """

    exit_code = 2


class ConfigError(EdgeAscError):
    """A recipe, override or model name is invalid."""


class DataError(EdgeAscError):
    """A dataset, audio file or split file is missing, corrupt or inconsistent."""


class CheckpointError(EdgeAscError):
    """A checkpoint is unreadable or does not match the model it claims to hold."""


class DomainError(EdgeAscError):
    """The input was fine but the result fails a check (for example a model over budget)."""

    exit_code = 1


class ExportError(EdgeAscError):
    """The conversion failed or its result misses a parity target (the input was fine): exit code 1."""

    exit_code = 1


class MissingDependencyError(EdgeAscError):
    """A package the export needs is not installed (exit code 2)."""


class RuntimeUnavailableError(EdgeAscError):
    """No TFLite interpreter is installed, or the requested one is not."""


class ModelFileError(EdgeAscError):
    """A model file is missing, unreadable or has inputs/outputs edgeasc cannot drive."""


class FirmwareError(EdgeAscError):
    """The model cannot be turned into firmware (an unsupported operator or tensor type): exit code 2."""


class FirmwareBuildError(EdgeAscError):
    """Building or running the generated firmware failed (compiler, QEMU): exit code 1."""

    exit_code = 1


class AuditError(EdgeAscError):
    """A model file is missing, unreadable or of an unsupported kind (exit code 2)."""
