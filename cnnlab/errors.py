"""User-facing errors.

Every error a person can trigger by choosing a model, a size, a file or a setting is a
:class:`CnnlabError`: its message says what was wrong and what to do. The command line and
the apps print the message (never a traceback) for these; anything else is a bug.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """Base class: an error whose message is meant for the user."""


class UnknownModelError(CnnlabError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelConfigError(CnnlabError, ValueError):
    """Bad class count, channel count, or other model argument."""


class InputSizeError(CnnlabError, ValueError):
    """An input the architecture cannot process (too small, or not the size it was built for)."""


class DataError(CnnlabError):
    """A dataset or image that cannot be found, downloaded or decoded."""


class ConfigError(CnnlabError, ValueError):
    """A training or evaluation setting out of range."""


class UnsafeFileError(CnnlabError):
    """A saved file (weights, checkpoint, cache, dataset pickle) that cnnlab refuses or cannot read:
    it would run code, holds something other than what it should, is empty, truncated or too large."""
