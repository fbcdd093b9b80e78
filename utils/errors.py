"""Errors a user can act on.

Each is raised with a message that says what was given, where (config key path or file:line),
and what would be accepted. `train.py` / `test.py` print it as one line and exit non-zero;
anything else that escapes is a bug in the template and keeps its traceback.
"""


class UserError(Exception):
    """Base class: a mistake in the user's config, data, files or command line."""


class ConfigError(UserError):
    """The config file, a command-line override, or a name in the config is wrong."""


class DataError(UserError):
    """A data file is missing, malformed, or cannot be downloaded."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or does not fit the config."""


class ContractError(UserError):
    """A module (a model, a loss, a data loader) does not keep the contract of its base class:
    the message names the module, the method and what was expected."""


class RunFolderError(UserError):
    """A run folder cannot be created, is taken by another run, or is not where runs live."""
