"""GPU top-k over 10,000,000 x 64 float16 model vectors resident in GPU memory.

The peer is a plain read of the same matrix on the same GPU (16-byte loads),
the memory-bandwidth floor; the CPU top-k of the same matrix runs beside it.
Skipped where no CUDA GPU is visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from fennec import kernels

pytestmark = pytest.mark.skipif(not kernels.cuda_available(), reason="no CUDA GPU visible")

N, D, K = 10_000_000, 64, 10


@pytest.fixture(scope="module")
def resident():
    rng = np.random.default_rng(0)
    host = rng.standard_normal((N, D), dtype=np.float32).astype(np.float16)
    return host, kernels.to_device(host)


@pytest.mark.benchmark(group="gpu-topk-10M-fp16")
def test_gpu_stream_read_fp16(benchmark, resident):
    benchmark.pedantic(resident[1].stream_read, rounds=50, warmup_rounds=5)


@pytest.mark.benchmark(group="gpu-topk-10M-fp16")
def test_gpu_topk_fp16_1q(benchmark, resident):
    host, matrix = resident
    q = np.random.default_rng(1).standard_normal(D, dtype=np.float32)
    scores, idx = benchmark.pedantic(kernels.topk, args=(matrix, q, K), rounds=50, warmup_rounds=5)
    cpu_scores, _ = kernels.topk(host, q, K, device="cpu")
    np.testing.assert_allclose(scores, cpu_scores, rtol=1e-3)


@pytest.mark.benchmark(group="gpu-topk-10M-fp16-64q")
def test_gpu_topk_fp16_64q(benchmark, resident):
    host, matrix = resident
    q = np.random.default_rng(2).standard_normal((64, D), dtype=np.float32)
    scores, _ = benchmark.pedantic(kernels.topk, args=(matrix, q, K), rounds=10, warmup_rounds=2)
    cpu_scores, _ = kernels.topk(host[:1_000_000], q, K, device="cpu")
    assert np.all(scores[:, 0] >= cpu_scores[:, 0] - 1e-2)  # the full matrix holds the 1M prefix
