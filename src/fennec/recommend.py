"""Transitional: fit moved to fennec.fitting, rank to fennec.ranking, side information to fennec.features."""
from .features import EMBEDDING_DIMS, TASK_NUMERIC_FEATURES, identifier_like, model_side_information  # noqa: F401
from .fitting import fit  # noqa: F401
from .ranking import FittedVersion, RankPlan, Ranker, Ranking, rank  # noqa: F401
from .space.fitted import DESCRIPTOR_STATE as DESCRIPTOR_PREFIX  # noqa: F401
