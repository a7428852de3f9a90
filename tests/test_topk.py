"""fennec.kernels.topk against a numpy float64 oracle."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fennec import kernels
from fennec.kernels import topk


def oracle(model_vectors, queries, k, metric="ip", mask=None):
    """Exact scores in float64; order by score (desc for ip, asc for l2), ties to the lower index."""
    v = model_vectors.astype(np.float64)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32)).astype(np.float64)
    if metric == "ip":
        scores = q @ v.T
        keys = -scores
    else:
        # Expanded in float64: exact enough, and no (q, n, d) temporary.
        scores = (v * v).sum(1)[None, :] + (q * q).sum(1)[:, None] - 2.0 * (q @ v.T)
        scores = np.maximum(scores, 0.0)
        keys = scores
    idx = np.arange(v.shape[0])
    out_s, out_i = [], []
    for row_keys, row_scores in zip(keys, scores):
        keep = idx if mask is None else idx[~mask]
        order = keep[np.lexsort((keep, row_keys[keep]))][:k]
        out_i.append(order)
        out_s.append(row_scores[order])
    return np.array(out_s), np.array(out_i)


def small_ints(rng, shape, dtype=np.float32, spread=3):
    # Integer-valued vectors: every dot product is exact in float32, so ties are real ties.
    return rng.integers(-spread, spread + 1, size=shape).astype(dtype)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("nq", [1, 3, 4, 17])
@pytest.mark.parametrize("d", [1, 7, 8, 64, 100])
def test_exact_on_integer_data_with_many_ties(device, simd, metric, dtype, nq, d):
    rng = np.random.default_rng(d * 100 + nq)
    v = small_ints(rng, (3001, d), dtype)
    q = small_ints(rng, (nq, d), np.float32)
    scores, indices = topk(v, q, 25, metric=metric, device=device)
    ref_s, ref_i = oracle(v, q, 25, metric)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_array_equal(scores, ref_s.astype(np.float32))


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("nq", [1, 2, 9, 64])
def test_random_real_data_matches_oracle(device, simd, metric, dtype, nq):
    rng = np.random.default_rng(nq)
    v = rng.standard_normal((20011, 37)).astype(dtype)
    q = rng.standard_normal((nq, 37)).astype(np.float32)
    k = 50
    scores, indices = topk(v, q, k, metric=metric, device=device)
    ref_s, ref_i = oracle(v, q, k, metric)
    assert scores.shape == indices.shape == (nq, k)
    # Scores are exact up to float32 rounding; indices agree wherever the oracle has no near-tie.
    np.testing.assert_allclose(scores, ref_s, rtol=1e-4, atol=1e-4)
    full = oracle(v, q, k + 1, metric)[0]
    for row in range(nq):
        gaps = np.abs(np.diff(full[row][: k + 1]))
        clear = np.ones(k, dtype=bool)
        clear[:-1] &= gaps[:-1] > 1e-3
        clear[1:] &= gaps[:-1] > 1e-3
        clear[-1] &= gaps[-1] > 1e-3
        np.testing.assert_array_equal(indices[row][clear], ref_i[row][clear])
        step = np.diff(scores[row])
        assert np.all(step <= 1e-6) if metric == "ip" else np.all(step >= -1e-6)


def test_all_rows_equal_gives_lowest_indices(device):
    v = np.ones((10000, 16), dtype=np.float32)
    scores, indices = topk(v, np.ones(16), 7, device=device)
    np.testing.assert_array_equal(indices, np.arange(7))
    np.testing.assert_array_equal(scores, np.full(7, 16.0, dtype=np.float32))


def test_ties_across_worker_chunks(device):
    # Duplicates far apart land in different workers' heaps; the merge must still pick the lowest.
    rng = np.random.default_rng(1)
    v = small_ints(rng, (300_000, 8), spread=1)
    best = np.full(8, 1.0, dtype=np.float32)
    positions = np.array([299_999, 150_001, 7, 150_000, 42])
    v[positions] = best
    _, indices = topk(v, best, 3, threads=2, device=device)
    np.testing.assert_array_equal(indices, np.sort(np.flatnonzero((v == best).all(1)))[:3])


def test_k_larger_than_n_returns_n(device):
    v = np.arange(12, dtype=np.float32).reshape(4, 3)
    scores, indices = topk(v, [1.0, 0.0, 0.0], 10, device=device)
    np.testing.assert_array_equal(indices, [3, 2, 1, 0])
    np.testing.assert_array_equal(scores, [9.0, 6.0, 3.0, 0.0])


def test_one_row_and_empty_matrix(device):
    one = np.array([[1.0, 2.0]], dtype=np.float32)
    scores, indices = topk(one, [1.0, 1.0], 5, device=device)
    np.testing.assert_array_equal(indices, [0])
    np.testing.assert_array_equal(scores, [3.0])
    empty = np.zeros((0, 2), dtype=np.float32)
    scores, indices = topk(empty, [[1.0, 1.0], [0.0, 1.0]], 5, device=device)
    assert scores.shape == indices.shape == (2, 0)


def test_single_query_gives_1d_and_batch_gives_2d():
    v = np.eye(4, dtype=np.float32)
    s1, i1 = topk(v, [0, 0, 1, 0], 2)
    assert s1.shape == i1.shape == (2,)
    s2, i2 = topk(v, [[0, 0, 1, 0]], 2)
    assert s2.shape == i2.shape == (1, 2)
    np.testing.assert_array_equal(i1, i2[0])
    assert i1.dtype == np.int64 and s1.dtype == np.float32


@pytest.mark.parametrize("nq", [1, 8])
def test_mask_skips_models(device, nq):
    rng = np.random.default_rng(5)
    v = small_ints(rng, (5000, 12))
    q = small_ints(rng, (nq, 12))
    mask = rng.random(5000) < 0.7
    scores, indices = topk(v, q, 20, mask=mask, device=device)
    ref_s, ref_i = oracle(v, q, 20, mask=mask)
    np.testing.assert_array_equal(indices.reshape(ref_i.shape), ref_i)
    assert not mask[indices].any()


def test_mask_leaving_fewer_than_k(device):
    v = np.arange(10, dtype=np.float32).reshape(10, 1)
    mask = np.ones(10, dtype=bool)
    mask[[2, 5]] = False
    scores, indices = topk(v, [1.0], 5, mask=mask, device=device)
    np.testing.assert_array_equal(indices, [5, 2])
    mask[:] = True
    scores, indices = topk(v, [1.0], 5, mask=mask, device=device)
    assert indices.shape == (0,)


def test_masked_rows_may_hold_nan(device):
    v = np.ones((100, 4), dtype=np.float32)
    v[3] = np.nan
    mask = np.zeros(100, dtype=bool)
    mask[3] = True
    _, indices = topk(v, np.ones(4), 5, mask=mask, device=device)
    assert 3 not in indices


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("nq", [1, 8])
def test_nan_or_inf_row_is_rejected(device, metric, bad, nq):
    v = np.ones((10000, 8), dtype=np.float32)
    v[7777, 3] = bad
    with pytest.raises(ValueError, match="model_vectors row 7777"):
        topk(v, np.ones((nq, 8)), 3, metric=metric, device=device)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_query_is_rejected(bad):
    q = np.ones(4)
    q[2] = bad
    with pytest.raises(ValueError, match="queries contain NaN or inf"):
        topk(np.ones((3, 4), dtype=np.float32), q, 1)


def test_memmap_is_read_in_place_without_a_large_temporary(tmp_path):
    n, d = 400_000, 32  # 51 MB on disk
    path = tmp_path / "models.f32"
    rng = np.random.default_rng(9)
    writer = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
    writer[:] = rng.standard_normal((n, d), dtype=np.float32)
    writer.flush()
    expected = topk(np.array(writer), np.ones(d), 10)
    del writer
    reader = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    tracemalloc.start()
    scores, indices = topk(reader, np.ones(d), 10)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(indices, expected[1])
    np.testing.assert_array_equal(scores, expected[0])
    assert peak < 1_000_000, f"topk allocated {peak} bytes on a {n * d * 4} byte matrix"


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((200_000, 24)).astype(np.float32)
    q = rng.standard_normal((5, 24)).astype(np.float32)
    one = topk(v, q, 30, threads=1)
    two = topk(v, q, 30, threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize(
    "model_vectors, error, message",
    [
        (np.ones((4, 3), dtype=np.float64), TypeError, "model_vectors must have dtype float32 or float16"),
        (np.ones((4, 3), dtype=np.int32), TypeError, "model_vectors must have dtype"),
        ([[1.0, 2.0, 3.0]], TypeError, "model_vectors must be a numpy array"),
        (np.ones(3, dtype=np.float32), ValueError, "model_vectors must be 2-D"),
        (np.ones((4, 0), dtype=np.float32), ValueError, "at least one column"),
        (np.ones((4, 6), dtype=np.float32)[:, ::2], ValueError, "C-contiguous"),
        (np.asfortranarray(np.ones((4, 3), dtype=np.float32)), ValueError, "C-contiguous"),
    ],
)
def test_bad_model_vectors(model_vectors, error, message):
    with pytest.raises(error, match=message):
        topk(model_vectors, np.ones(3), 1)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"queries": np.ones(4)}, ValueError, "queries have dimension 4 but model_vectors have dimension 3"),
        ({"queries": np.ones((2, 2, 3))}, ValueError, r"queries must have shape \(d,\) or \(q, d\)"),
        ({"queries": np.ones((0, 3))}, ValueError, "at least one query"),
        ({"queries": np.array(["a", "b", "c"])}, TypeError, "queries must be a numeric array"),
        ({"k": 0}, ValueError, "k must be an integer >= 1"),
        ({"k": -3}, ValueError, "k must be an integer >= 1"),
        ({"k": 2.5}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"metric": "cosine"}, ValueError, "metric must be 'ip' or 'l2'"),
        ({"mask": np.zeros(5, dtype=np.int8)}, TypeError, "mask must be a boolean array"),
        ({"mask": np.zeros(4, dtype=bool)}, ValueError, r"mask must have shape \(5,\)"),
        ({"device": "gpu"}, ValueError, "device must be 'auto', 'cpu' or 'cuda'"),
        ({"threads": 0}, ValueError, "threads must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    args = {"model_vectors": np.ones((5, 3), dtype=np.float32), "queries": np.ones(3), "k": 2}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        topk(**args)


def test_cuda_request_without_cuda_is_a_clear_error():
    if kernels.cuda_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="without CUDA|no CUDA GPU"):
        topk(np.ones((5, 3), dtype=np.float32), np.ones(3), 2, device="cuda")


def test_auto_device_falls_back_quietly():
    v = np.ones((5, 3), dtype=np.float32)
    np.testing.assert_array_equal(topk(v, np.ones(3), 2, device="auto")[1], [0, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_gpu_resident_matrix_matches_the_cpu(device, dtype, metric):
    if device != "cuda":
        pytest.skip("needs a GPU-resident matrix")
    rng = np.random.default_rng(12)
    v = small_ints(rng, (50_000, 40), dtype)
    q = small_ints(rng, (9, 40))
    mask = rng.random(50_000) < 0.2
    resident = kernels.to_device(v)
    got = topk(resident, q, 17, metric=metric, mask=mask)
    want = topk(v, q, 17, metric=metric, mask=mask, device="cpu")
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_to_device_without_a_gpu_is_a_clear_error():
    if kernels.cuda_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="without CUDA|no CUDA GPU"):
        kernels.to_device(np.ones((4, 3), dtype=np.float32))
