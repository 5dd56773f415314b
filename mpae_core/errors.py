"""Exceptions with messages meant for the user: one sentence naming the file, the problem and what to do."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


class MPAEError(Exception):
    """Base class for errors the app and the CLIs show to the user as they are."""


class CheckpointError(MPAEError):
    """A file that is not a usable MPAE checkpoint."""


@dataclass(frozen=True)
class MissingWeights:
    """Pretrained weights that were neither given nor embedded nor cached, and could not be downloaded.

    The facts only: each front end words its own advice from them (the command lines name ``option``, the app
    points at its file fields). :meth:`cli_message` is the command lines' sentence; :meth:`from_message` reads it
    back, for the app's dialogs that only see a training subprocess's error output.
    """

    what: str  # "DINOv2 backbone", "VGG-19"
    model_name: str  # the timm name, e.g. vit_base_patch14_reg4_dinov2.lvd142m
    url: str  # where to download model.safetensors by hand
    option: str  # the command-line option that takes the file, e.g. --backbone-weights
    env_var: str  # the environment variable that does, e.g. MPAE_BACKBONE_WEIGHTS
    reason: str = ""  # why they could not be downloaded: offline mode, no connection, ...

    def because(self, reason: str) -> "MissingWeights":
        return dataclasses.replace(self, reason=reason)

    def cli_message(self) -> str:
        return (f"The {self.what} weights ({self.model_name}) are not on this machine and could not be downloaded "
                f"({self.reason}); download model.safetensors from {self.url} and pass it with {self.option} PATH "
                f"or set {self.env_var}=PATH.")

    @classmethod
    def from_message(cls, text: str) -> "MissingWeights | None":
        """The facts of a :meth:`cli_message` found in ``text`` (e.g. a process's error output), else None."""
        match = _CLI_MESSAGE.search(text)
        return None if match is None else cls(**match.groupdict())


_CLI_MESSAGE = re.compile(
    r"The (?P<what>[^\n]+?) weights \((?P<model_name>[^)\s]+)\) are not on this machine and could not be "
    r"downloaded \((?P<reason>[^\n]*)\); download model\.safetensors from (?P<url>\S+) and pass it with "
    r"(?P<option>--[\w-]+) PATH or set (?P<env_var>\w+)=PATH\.")


class BackboneWeightsError(MPAEError):
    """Backbone (or VGG) weights that are missing or do not fit; ``missing`` says which, when they are missing."""

    def __init__(self, message: str, missing: MissingWeights | None = None) -> None:
        super().__init__(message)
        self.missing = missing

    @classmethod
    def for_missing(cls, missing: MissingWeights) -> "BackboneWeightsError":
        return cls(missing.cli_message(), missing)

    def __reduce__(self):  # picklable with its facts (errors may cross process boundaries)
        return type(self), (str(self), self.missing)


def brief_error(exc: BaseException, limit: int = 90) -> str:
    """The first sentence of a library's error message, short enough to sit inside ours."""
    text = str(exc).strip().split(". ")[0].split("\n")[0].rstrip(".") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
