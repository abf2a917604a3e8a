"""Errors of :mod:`pyrovi.compress`: both are ``ValueError`` subclasses with messages that name
what is wrong (the stream's inconsistent field, the model file and its defect)."""

from __future__ import annotations

__all__ = ["CorruptStreamError", "ModelFileError"]


class CorruptStreamError(ValueError):
    """A compressed stream that cannot be decoded as it is: not a pyrovi bits-back stream, a
    header inconsistent with itself or with the stream's size, a checksum mismatch, or (for
    version-1 streams, which carry no checksum) a payload that runs out or decodes to something
    else than what was encoded. The message names the inconsistency."""


class ModelFileError(ValueError):
    """A model file that :func:`pyrovi.compress.load_vae` cannot use: a directory, empty,
    truncated or corrupt, not written by ``torch.save``, or not a
    :func:`pyrovi.compress.save_vae` file. The message names the file and the defect."""
