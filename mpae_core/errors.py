"""Exceptions with messages meant for the user: one sentence naming the file, the problem and what to do."""
from __future__ import annotations


class MPAEError(Exception):
    """Base class for errors the app and the CLIs show to the user as they are."""


class CheckpointError(MPAEError):
    """A file that is not a usable MPAE checkpoint."""


class BackboneWeightsError(MPAEError):
    """Backbone (or VGG) weights that are missing or do not fit."""
