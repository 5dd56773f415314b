"""Refinement: fine-tune a project's model on the images a person corrected, so the rest come back better.

Modules: ``targets`` (label values → slot targets), ``features`` (the frozen backbone's cached tokens),
``objective`` (MPAE losses + the supervised term), ``session`` (reading and checking a project), ``loop`` (the
optimisation and the saved model), ``cli`` (``python -m training.run refine``).
"""
from .loop import RefineConfig, RefineResult, Refiner
from .objective import DEFAULT_SUPERVISED_WEIGHT, supervised_loss
from .session import RefineInputError, RefineSession, open_session
from .targets import NO_TARGET, SlotGroups

__all__ = ["RefineConfig", "RefineResult", "Refiner", "RefineInputError", "RefineSession", "open_session",
           "SlotGroups", "NO_TARGET", "DEFAULT_SUPERVISED_WEIGHT", "supervised_loss"]
