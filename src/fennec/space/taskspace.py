"""Task side information as coordinates: distances between tasks, and proxy descriptors.

A task-to-task distance matrix (or the distances between the tasks' proxy
descriptors) is turned into a few coordinates by classical multidimensional
scaling, so the transfer space can use it as task features. A new task is
placed among the known ones from its distances to them alone (Gower's
out-of-sample formula for classical scaling, Gower 1968), without refitting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["DescriptorEncoder", "DistanceEmbedding", "EMBEDDING_DIMS"]

EMBEDDING_DIMS = 2


@dataclass
class DistanceEmbedding:
    """Classical scaling of known tasks; ``place`` puts a new task among them."""

    basis: np.ndarray  # tasks x dims: eigenvectors divided by sqrt(eigenvalue)
    row_mean: np.ndarray  # per known task, mean squared distance to the known tasks
    grand_mean: float
    coordinates: np.ndarray  # tasks x dims

    @classmethod
    def fit(cls, distance: np.ndarray, dims: int = EMBEDDING_DIMS) -> DistanceEmbedding:
        d = np.asarray(distance, dtype=float)
        if d.ndim != 2 or d.shape[0] != d.shape[1] or len(d) < 2:
            raise ValueError(f"distance: expected a square matrix of at least 2 tasks, got shape {d.shape}")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("distance: must be finite and non-negative")
        squared = ((d + d.T) / 2.0) ** 2
        row_mean = squared.mean(1)
        grand_mean = float(squared.mean())
        gram = -0.5 * (squared - row_mean[:, None] - row_mean[None, :] + grand_mean)
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1][:dims]
        values, vectors = values[order], vectors[:, order]
        keep = values > 1e-12 * max(1.0, float(values[0]) if len(values) else 1.0)
        values = np.where(keep, values, 1.0)
        vectors = np.where(keep[None, :], vectors, 0.0)
        coordinates = vectors * np.sqrt(values)
        return cls(basis=vectors / np.sqrt(values), row_mean=row_mean, grand_mean=grand_mean,
                   coordinates=coordinates)

    def place(self, distances: ArrayLike) -> np.ndarray:
        """Coordinates of new task(s) from their distances to every known task (n x known, or known)."""
        d = np.atleast_2d(np.asarray(distances, dtype=float))
        if d.shape[1] != len(self.row_mean):
            raise ValueError(f"distances: expected {len(self.row_mean)} distances to the known tasks, "
                             f"got {d.shape[1]}")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("distances: must be finite and non-negative")
        squared = d**2
        b = -0.5 * (squared - squared.mean(1, keepdims=True) - self.row_mean[None, :] + self.grand_mean)
        out: np.ndarray = b @ self.basis
        return out[0] if np.ndim(distances) == 1 else out


@dataclass
class DescriptorEncoder:
    """Proxy descriptors of known tasks -> coordinates, through their standardised distances."""

    descriptors: np.ndarray  # known tasks x D, standardised
    mean: np.ndarray
    scale: np.ndarray
    embedding: DistanceEmbedding

    @classmethod
    def fit(cls, descriptors: np.ndarray, dims: int = EMBEDDING_DIMS) -> DescriptorEncoder:
        x = np.asarray(descriptors, dtype=float)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"descriptors: expected a tasks x dims matrix of at least 2 tasks, got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("descriptors: must be finite")
        mean, scale = x.mean(0), x.std(0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        embedding = DistanceEmbedding.fit(_distances(z, z), dims)
        return cls(descriptors=z, mean=mean, scale=scale, embedding=embedding)

    @property
    def coordinates(self) -> np.ndarray:
        return self.embedding.coordinates

    def distances(self, descriptor: ArrayLike) -> np.ndarray:
        """Distances of a new task's descriptor (1-D) or of several (2-D) to the known tasks'."""
        x = np.asarray(descriptor, dtype=float)
        if x.ndim not in (1, 2) or x.shape[-1] != self.descriptors.shape[1]:
            raise ValueError(f"descriptor: expected {self.descriptors.shape[1]} values (the zoo's proxy "
                             f"descriptor width), got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("descriptor: must be finite")
        out = _distances((np.atleast_2d(x) - self.mean) / self.scale, self.descriptors)
        return out[0] if x.ndim == 1 else out

    def known_distances(self) -> np.ndarray:
        """Distances between the known tasks' descriptors (known x known)."""
        return _distances(self.descriptors, self.descriptors)

    def transform(self, descriptor: ArrayLike) -> np.ndarray:
        """Coordinates of a new task's descriptor (1-D) or of several (2-D)."""
        return self.embedding.place(self.distances(descriptor))  # 1-D in, 1-D out

    def to_state(self, prefix: str) -> dict[str, np.ndarray]:
        e = self.embedding
        return {f"{prefix}descriptors": self.descriptors, f"{prefix}mean": self.mean,
                f"{prefix}scale": self.scale, f"{prefix}basis": e.basis, f"{prefix}row_mean": e.row_mean,
                f"{prefix}grand_mean": np.array([e.grand_mean]), f"{prefix}coordinates": e.coordinates}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], prefix: str) -> DescriptorEncoder:
        def g(name: str) -> np.ndarray:
            return np.asarray(state[prefix + name], dtype=float)

        embedding = DistanceEmbedding(basis=g("basis"), row_mean=g("row_mean"),
                                      grand_mean=float(g("grand_mean")[0]), coordinates=g("coordinates"))
        return cls(descriptors=g("descriptors"), mean=g("mean"), scale=g("scale"), embedding=embedding)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows, divided by sqrt(width) so they do not grow with it."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    distances: np.ndarray = np.sqrt(np.maximum(squared, 0.0) / a.shape[1])
    return distances
