"""fennec.kernels.pool against numpy float64 statistics."""

from __future__ import annotations

import numpy as np
import pytest

from fennec.kernels import pool


def oracle(features, labels, n_classes, normalize=False, ddof=0):
    x = features.astype(np.float32).astype(np.float64)
    if normalize:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    counts = np.bincount(labels, minlength=n_classes)
    mean = np.full((n_classes, x.shape[1]), np.nan)
    var = np.full((n_classes, x.shape[1]), np.nan)
    for c in range(n_classes):
        rows = x[labels == c]
        if len(rows):
            mean[c] = rows.mean(0)
        if len(rows) > ddof:
            var[c] = ((rows - rows.mean(0)) ** 2).sum(0) / (len(rows) - ddof)
    return counts, mean, var


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("d", [1, 5, 64, 130])
def test_matches_numpy(device, simd, dtype, normalize, d):
    rng = np.random.default_rng(d)
    features = (rng.standard_normal((3000, d)) * 3 + 1).astype(dtype)
    labels = rng.integers(0, 12, 3000)
    labels[labels == 11] = 10  # class 11 stays empty
    got = pool(features, labels, 12, normalize=normalize, device=device)
    want = oracle(features, labels, 12, normalize)
    np.testing.assert_array_equal(got.counts, want[0])
    np.testing.assert_allclose(got.mean, want[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.var, want[2], rtol=1e-6, atol=1e-6)
    assert np.isnan(got.mean[11]).all() and np.isnan(got.var[11]).all()


@pytest.mark.parametrize("ddof", [0, 1, 2])
def test_ddof_and_tiny_classes(device, ddof):
    features = np.array([[1.0], [3.0], [5.0], [7.0]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1])
    got = pool(features, labels, 2, ddof=ddof, device=device)
    want = oracle(features, labels, 2, ddof=ddof)
    np.testing.assert_allclose(got.var, want[2], rtol=1e-12)
    assert np.isnan(got.var[1, 0]) == (ddof >= 1)


def test_variance_is_robust_to_a_large_mean(device):
    # sum(x^2)/n - mean^2 would lose every digit here; the kernel must not.
    rng = np.random.default_rng(0)
    features = (30000.0 + rng.standard_normal((20000, 8))).astype(np.float32)
    labels = rng.integers(0, 3, 20000)
    got = pool(features, labels, 3, device=device)
    want = oracle(features, labels, 3)
    np.testing.assert_allclose(got.var, want[2], rtol=1e-9)


def test_constant_columns_have_zero_variance(device):
    features = np.full((1000, 4), 0.1, dtype=np.float32)
    got = pool(features, np.zeros(1000, dtype=np.int64), 1, device=device)
    assert (got.var == 0.0).all()
    np.testing.assert_array_equal(got.mean, np.full((1, 4), np.float64(np.float32(0.1))))


def test_zero_rows_stay_zero_when_normalized(device):
    features = np.zeros((3, 4), dtype=np.float32)
    features[1] = [3.0, 4.0, 0.0, 0.0]
    got = pool(features, np.array([0, 0, 0]), 1, normalize=True, device=device)
    np.testing.assert_allclose(got.mean[0], [0.2, 0.8 / 3, 0.0, 0.0], rtol=1e-7)


def test_no_rows():
    got = pool(np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64), 2)
    np.testing.assert_array_equal(got.counts, [0, 0])
    assert np.isnan(got.mean).all() and np.isnan(got.var).all()


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((5000, 300)).astype(np.float32)
    labels = rng.integers(0, 7, 5000)
    one = pool(features, labels, 7, threads=1)
    two = pool(features, labels, 7, threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_row_is_rejected(device, bad):
    features = np.ones((500, 70), dtype=np.float32)
    features[321, 69] = bad
    with pytest.raises(ValueError, match="features row 321 holds NaN or inf"):
        pool(features, np.zeros(500, dtype=np.int64), 1, device=device)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"features": np.ones((4, 2))}, TypeError, "features must have dtype float32 or float16"),
        ({"features": np.ones(4, dtype=np.float32)}, ValueError, "features must be 2-D"),
        ({"labels": np.array([0, 1, 2])}, ValueError, r"labels must have shape \(4,\)"),
        ({"labels": np.array([0.0, 1.0, 1.0, 0.0])}, TypeError, "labels must be integers"),
        ({"labels": np.array([True, False, True, False])}, TypeError, "labels must be integers"),
        ({"labels": np.array([0, 1, 3, 0])}, ValueError, r"labels\[2\] = 3 is outside \[0, n_classes=3\)"),
        ({"labels": np.array([0, -1, 1, 0])}, ValueError, r"labels\[1\] = -1 is outside"),
        ({"n_classes": 0}, ValueError, "n_classes must be an integer >= 1"),
        ({"ddof": -1}, ValueError, "ddof must be an integer >= 0"),
        ({"normalize": "yes"}, TypeError, "normalize must be a bool"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    args = {"features": np.ones((4, 2), dtype=np.float32), "labels": np.array([0, 1, 2, 0]), "n_classes": 3}
    args.update(kwargs)
    features = args.pop("features")
    labels = args.pop("labels")
    n_classes = args.pop("n_classes")
    with pytest.raises(error, match=message):
        pool(features, labels, n_classes, **args)
