"""Typed exceptions of xaicore.

Every error a user can cause derives from :class:`XaiError` and carries a message written for
a person: what went wrong and what to do about it. The dashboard shows ``str(error)`` as is,
so messages are one or two plain sentences, never a traceback.
"""

from __future__ import annotations


class XaiError(Exception):
    """Base class of every error xaicore raises on purpose."""


class ImageLoadError(XaiError):
    """An image could not be read: unknown format, damaged file, or over a size cap."""


class CheckpointError(XaiError):
    """A model checkpoint was refused: unsafe content, wrong keys or shapes, too large."""


class ModelNotAvailable(XaiError):
    """A model cannot be built here, for example pretrained weights that are not cached offline."""


class MethodUnavailable(XaiError):
    """An explanation method cannot run on this model; the message says why."""


class ParameterError(XaiError, ValueError):
    """A parameter is out of its allowed range or of the wrong kind."""


class UnknownNameError(XaiError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(XaiError):
    """A registry was asked to register a name twice."""


class OutOfMemory(XaiError):
    """Work did not fit in memory even with a batch of one image."""


class EngineUnavailable(XaiError):
    """A distributed engine (Ray) is not installed, cannot be reached, or lost its workers for good."""


class ReviewStoreError(XaiError):
    """The review database cannot be opened, read or written (locked, read-only, damaged)."""
