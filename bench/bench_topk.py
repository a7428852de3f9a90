"""Fused top-k over 1,000,000 x 64 model vectors, against its peers in the same run.

Peers: a plain streaming read of the matrix with the same two threads (the
memory-bandwidth floor), numpy (`V @ q` then `argpartition`), and faiss-cpu
`IndexFlatIP.search`. Every benchmark checks its answer against numpy's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fennec import _core, kernels

THREADS = 2
K = 10


@pytest.fixture(scope="module")
def matrices(zoo_matrix):
    return {"fp32": zoo_matrix, "fp16": zoo_matrix.astype(np.float16)}


@pytest.fixture(scope="module")
def queries():
    rng = np.random.default_rng(1)
    return {"1q": rng.standard_normal(64, dtype=np.float32),
            "64q": rng.standard_normal((64, 64), dtype=np.float32)}


def numpy_topk(matrix, q, k):
    scores = matrix @ q.T if q.ndim == 2 else matrix @ q
    if scores.ndim == 1:
        part = np.argpartition(-scores, k)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    part = np.argpartition(-scores, k, axis=0)[:k]
    top = np.take_along_axis(scores, part, 0)
    return np.take_along_axis(part, np.argsort(-top, axis=0, kind="stable"), 0).T


@pytest.fixture(scope="module")
def faiss_index(zoo_matrix):
    faiss = pytest.importorskip("faiss")
    faiss.omp_set_num_threads(THREADS)
    index = faiss.IndexFlatIP(zoo_matrix.shape[1])
    index.add(zoo_matrix)
    return index


def _check_same_models(got, matrix, q):
    # Near-ties may swap places between float orders; compare the top score sets.
    want = numpy_topk(matrix.astype(np.float32) if matrix.dtype != np.float32 else matrix, q, K)
    got_scores = np.sort(matrix[np.asarray(got).reshape(-1)].astype(np.float32) @ np.atleast_2d(q).T, axis=0)
    want_scores = np.sort(matrix[np.asarray(want).reshape(-1)].astype(np.float32) @ np.atleast_2d(q).T, axis=0)
    np.testing.assert_allclose(np.sort(got_scores.ravel()), np.sort(want_scores.ravel()), rtol=1e-4)


@pytest.mark.benchmark(group="topk-1M-1q")
def test_stream_read_fp32(benchmark, matrices):
    total = benchmark.pedantic(_core.stream_read, args=(matrices["fp32"], THREADS), rounds=30, warmup_rounds=3)
    assert np.isfinite(total)


@pytest.mark.benchmark(group="topk-1M-1q")
def test_fennec_topk_fp32_1q(benchmark, matrices, queries):
    _, idx = benchmark.pedantic(kernels.topk, args=(matrices["fp32"], queries["1q"], K),
                                kwargs={"threads": THREADS}, rounds=30, warmup_rounds=3)
    _check_same_models(idx, matrices["fp32"], queries["1q"])


@pytest.mark.benchmark(group="topk-1M-1q")
def test_numpy_topk_1q(benchmark, matrices, queries):
    idx = benchmark.pedantic(numpy_topk, args=(matrices["fp32"], queries["1q"], K), rounds=20, warmup_rounds=2)
    assert len(idx) == K


@pytest.mark.benchmark(group="topk-1M-1q")
def test_faiss_flat_ip_1q(benchmark, faiss_index, matrices, queries):
    _, idx = benchmark.pedantic(faiss_index.search, args=(queries["1q"][None, :], K), rounds=20, warmup_rounds=2)
    _check_same_models(idx[0], matrices["fp32"], queries["1q"])


@pytest.mark.benchmark(group="topk-1M-1q-fp16")
def test_stream_read_fp16(benchmark, matrices):
    total = benchmark.pedantic(_core.stream_read, args=(matrices["fp16"], THREADS), rounds=30, warmup_rounds=3)
    assert np.isfinite(total)


@pytest.mark.benchmark(group="topk-1M-1q-fp16")
def test_fennec_topk_fp16_1q(benchmark, matrices, queries):
    _, idx = benchmark.pedantic(kernels.topk, args=(matrices["fp16"], queries["1q"], K),
                                kwargs={"threads": THREADS}, rounds=30, warmup_rounds=3)
    _check_same_models(idx, matrices["fp16"], queries["1q"])


@pytest.mark.benchmark(group="topk-1M-64q")
def test_fennec_topk_fp32_64q(benchmark, matrices, queries):
    _, idx = benchmark.pedantic(kernels.topk, args=(matrices["fp32"], queries["64q"], K),
                                kwargs={"threads": THREADS}, rounds=10, warmup_rounds=1)
    for row in (0, 31, 63):
        _check_same_models(idx[row], matrices["fp32"], queries["64q"][row])


@pytest.mark.benchmark(group="topk-1M-64q")
def test_faiss_flat_ip_64q(benchmark, faiss_index, matrices, queries):
    _, idx = benchmark.pedantic(faiss_index.search, args=(queries["64q"], K), rounds=5, warmup_rounds=1)
    _check_same_models(idx[5], matrices["fp32"], queries["64q"][5])


@pytest.mark.benchmark(group="topk-1M-64q")
def test_numpy_topk_64q(benchmark, matrices, queries):
    idx = benchmark.pedantic(numpy_topk, args=(matrices["fp32"], queries["64q"], K), rounds=5, warmup_rounds=1)
    assert idx.shape == (64, K)


PEAK_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from fennec import kernels

    def status(field):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024

    which = sys.argv[1]
    matrix = np.full((1_000_000, 64), 0.5, dtype=np.float32)
    matrix[::997] = 1.0
    q = np.ones(64, dtype=np.float32)
    kernels.topk(matrix[:1000], q, 10, threads=2)  # start the worker threads first
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak resident size (VmHWM) to the current one
    before = status("VmRSS")
    if which == "fennec":
        kernels.topk(matrix, q, 10, threads=2)
    else:
        s = matrix @ q
        np.argpartition(-s, 10)[:10]
    print(status("VmHWM") - before)
""")


def _peak_extra_bytes(which):
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, which], capture_output=True, text=True,
                         check=True, timeout=300)
    return int(out.stdout.strip())


def test_topk_peak_extra_memory(extra_report):
    """Extra peak memory of one top-k over a 256 MB matrix: O(q*k + threads*block), not O(N)."""
    fennec_bytes = _peak_extra_bytes("fennec")
    numpy_bytes = _peak_extra_bytes("numpy")
    extra_report["topk peak extra memory, fennec (1M x 64 fp32)"] = f"{fennec_bytes / 2**20:.2f} MiB"
    extra_report["topk peak extra memory, numpy (1M x 64 fp32)"] = f"{numpy_bytes / 2**20:.2f} MiB"
    assert fennec_bytes < 2 * 2**20
