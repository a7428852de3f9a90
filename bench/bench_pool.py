"""Per-class pooling of 100,000 x 768 features into 100 classes, against numpy.

Three numpy formulations run in the same session; the fastest of them is the
peer. They use the quick sum-of-squares variance and float32 matmuls where
that is faster, so they do less careful arithmetic than fennec's float64 Welford.
"""

from __future__ import annotations

import numpy as np
import pytest

from fennec import kernels

N, D, C = 100_000, 768, 100


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    features = rng.standard_normal((N, D), dtype=np.float32)
    labels = rng.integers(0, C, N)
    return features, labels


@pytest.fixture(scope="module")
def reference(data):
    features, labels = data
    return numpy_per_class(features, labels)


def numpy_sorted_reduceat(features, labels):
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=C)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ordered = features[order]
    sums = np.add.reduceat(ordered, starts, axis=0, dtype=np.float64)
    squares = np.add.reduceat(ordered * ordered, starts, axis=0, dtype=np.float64)
    mean = sums / counts[:, None]
    return counts, mean, squares / counts[:, None] - mean**2


def numpy_onehot_matmul(features, labels):
    onehot = np.zeros((C, len(labels)), dtype=np.float32)
    onehot[labels, np.arange(len(labels))] = 1.0
    counts = np.bincount(labels, minlength=C)
    mean = (onehot @ features) / counts[:, None]
    return counts, mean, (onehot @ (features * features)) / counts[:, None] - mean**2


def numpy_per_class(features, labels):
    counts = np.bincount(labels, minlength=C)
    mean = np.empty((C, D))
    var = np.empty((C, D))
    for c in range(C):
        rows = features[labels == c]
        mean[c] = rows.mean(0, dtype=np.float64)
        var[c] = rows.var(0, dtype=np.float64)
    return counts, mean, var


def _check(result, reference, rtol):
    np.testing.assert_array_equal(result[0], reference[0])
    np.testing.assert_allclose(result[1], reference[1], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(result[2], reference[2], rtol=rtol, atol=rtol)


@pytest.mark.benchmark(group="pool-100k-768")
def test_fennec_pool(benchmark, data, reference):
    result = benchmark.pedantic(kernels.pool, args=(*data, C), kwargs={"threads": 2}, rounds=10, warmup_rounds=1)
    _check(result, reference, 1e-9)


@pytest.mark.benchmark(group="pool-100k-768")
def test_numpy_pool_sorted_reduceat(benchmark, data, reference):
    _check(benchmark.pedantic(numpy_sorted_reduceat, args=data, rounds=5, warmup_rounds=1), reference, 1e-6)


@pytest.mark.benchmark(group="pool-100k-768")
def test_numpy_pool_onehot_matmul(benchmark, data, reference):
    _check(benchmark.pedantic(numpy_onehot_matmul, args=data, rounds=5, warmup_rounds=1), reference, 1e-4)


@pytest.mark.benchmark(group="pool-100k-768")
def test_numpy_pool_per_class(benchmark, data, reference):
    _check(benchmark.pedantic(numpy_per_class, args=data, rounds=5, warmup_rounds=1), reference, 1e-12)
