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


class InputTooSmallError(InputSizeError):
    """The input shrinks to nothing somewhere inside the network."""


class WeightsUnavailableError(CnnlabError):
    """Pretrained weights are not on disk and cannot be downloaded (or the file there is unusable)."""


class RunNotFoundError(CnnlabError, KeyError):
    """No saved run has this id (or this literal beginning of an id)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RunError(CnnlabError):
    """A run that cannot be written, loaded or deleted as asked."""


class CheckpointMismatchError(CnnlabError, ValueError):
    """A checkpoint whose layers do not fit the model (other architecture or class count)."""


class LayerNotFoundError(CnnlabError, KeyError):
    """No layer of the model has this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LessonError(ConfigError):
    """A lesson file that cannot be read or run: the message names the file, the key and its line."""
