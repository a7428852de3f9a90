"""Transitional: moved to fennec.space.taskspace."""
from .space.taskspace import DescriptorEncoder, DistanceEmbedding, EMBEDDING_DIMS  # noqa: F401
