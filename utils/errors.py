"""Errors a user can act on.

Each is raised with a message that says what was given, where (config key path or file:line),
and what would be accepted. `train.py` / `test.py` print it as one line and exit non-zero;
anything else that escapes is a bug in the template and keeps its traceback.
"""

import os
import sys


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


def exit_interrupted(signum=None, frame=None):
    """A script's SIGINT handler while its imports load (torch takes seconds): Ctrl-C then ends it
    as quietly as later on, with "interrupted" and exit code 130, instead of an import traceback.
    It exits at once (os._exit): nothing has been written yet, and some library imports catch
    every exception, SystemExit included, and would go on."""
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)
