"""Transitional: moved to fennec.space.transfer."""
from .space.transfer import *  # noqa: F401,F403
from .space.transfer import PRIOR_SHRINKAGE, MAX_NEIGHBOUR_RANK, _weighted_tau  # noqa: F401
from .space.vectors import neighbour_weights, task_vector  # noqa: F401
