"""User-facing errors. Each one carries a single line that names the file, row or key at fault."""


class CapflowError(Exception):
    """Base class: the stage CLIs print its message on one line and exit with status 2."""


class ConfigError(CapflowError):
    """params.yaml is invalid: unknown key, wrong type, bad value."""


class DataError(CapflowError):
    """A dataset file is missing, unreadable or holds invalid rows."""


class ArtifactError(CapflowError):
    """A pipeline artifact is missing, corrupted or not the one expected."""


class ModelError(CapflowError):
    """A model cannot be resolved to local files or loaded."""
