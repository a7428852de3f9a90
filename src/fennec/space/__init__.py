"""The transfer space: its fitted type, the fit that produces it, and the task coordinates it uses."""

from .choice import CHOICE_RULES, check_choice, choose_models
from .evidence import Evidence, scored_rows
from .fitted import DESCRIPTOR_COLUMN, TransferSpace
from .fit import fit_space
from .taskspace import DescriptorEncoder, DistanceEmbedding
from .transfer import cold_ridge_strength, fit_transfer, normalize_scores, predict_cold_models
from .vectors import neighbour_weights, task_vector

__all__ = [
    "CHOICE_RULES",
    "DESCRIPTOR_COLUMN",
    "DescriptorEncoder",
    "DistanceEmbedding",
    "Evidence",
    "TransferSpace",
    "check_choice",
    "choose_models",
    "cold_ridge_strength",
    "fit_space",
    "fit_transfer",
    "neighbour_weights",
    "normalize_scores",
    "predict_cold_models",
    "scored_rows",
    "task_vector",
]
