"""Benchmark support: shared inputs, and the table of ratios against each peer.

Every fennec benchmark has its peer (numpy, faiss, networkx, a plain streaming
read) in the same run. At the end, `TARGETS` are looked up by benchmark name and
each ratio of median times is printed beside the target it must meet.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

# (what, slower benchmark, faster benchmark, required ratio slower/faster,
#  or a ceiling when the target is "fennec within x of the floor")
TARGETS = [
    ("topk fp32 1q vs faiss IndexFlatIP", "test_faiss_flat_ip_1q", "test_fennec_topk_fp32_1q", ">=", 1.5),
    ("topk fp32 1q vs numpy matmul+argpartition", "test_numpy_topk_1q", "test_fennec_topk_fp32_1q", ">=", 1.3),
    ("topk fp32 1q / streaming read (2 threads)", "test_fennec_topk_fp32_1q", "test_stream_read_fp32", "<=", 1.25),
    ("topk fp16 vs fp32 storage", "test_fennec_topk_fp32_1q", "test_fennec_topk_fp16_1q", ">=", 1.7),
    ("topk fp16 1q / streaming read fp16", "test_fennec_topk_fp16_1q", "test_stream_read_fp16", "<=", 1.25),
    ("topk 64 queries vs faiss IndexFlatIP", "test_faiss_flat_ip_64q", "test_fennec_topk_fp32_64q", ">=", 5.0),
    ("topk 64 queries vs numpy", "test_numpy_topk_64q", "test_fennec_topk_fp32_64q", ">=", None),
    ("pool 100k x 768 vs fastest numpy", "fastest_numpy_pool", "test_fennec_pool", ">=", 3.0),
    ("GPU topk 10M x 64 fp16 1q / GPU streaming read", "test_gpu_topk_fp16_1q", "test_gpu_stream_read_fp16", "<=", 1.5),
    ("wl_features vs networkx (1,000 graphs, 50-1,500 nodes)", "test_networkx_wl", "test_fennec_wl", ">=", 50.0),
    ("wl_features 1 thread vs networkx (same graphs)", "test_networkx_wl", "test_fennec_wl_1thread", ">=", 50.0),
    ("wl_features incl. packing vs networkx (same graphs)", "test_networkx_wl", "test_fennec_wl_unpacked", ">=", None),
    ("wl_features vs networkx (1,000 graphs of 300 nodes)", "test_networkx_wl_300", "test_fennec_wl_300", ">=", None),
    ("archi2vec embed vs networkx WL (1,000 graphs of ~300 nodes)", "test_networkx_wl_subgraph_hashes",
     "test_fennec_archi2vec_embed", ">=", None),
    ("rank 1M models: numpy scoring vs Ranker.rank end to end", "test_numpy_rank_1m", "test_fennec_rank_1m", ">=", None),
    ("rank 1M models: numpy scoring vs core topk", "test_numpy_rank_1m", "test_fennec_topk_1m", ">=", None),
    ("fit 10k x 1k: rank-5 NMF (original recipe) vs fennec.fit", "test_nmf_rank5_10k_x_1k", "test_fennec_fit_10k_x_1k",
     ">=", None),
    ("add_history one row: 1M stored results / 1k stored", "test_zoo_add_history_row_1m",
     "test_zoo_add_history_row_1k", "<=", 1.5),
    ("add_history one row: 440k stored results / 1k stored", "test_zoo_add_history_row_440k",
     "test_zoo_add_history_row_1k", "<=", 1.5),
    ("measure: Ray 1 worker / Ray 2 workers (2 cores)", "test_measure_ray_1_worker", "test_measure_ray_2_workers",
     ">=", 1.7),
    ("measure: 2 plain processes side by side / 1 (the same work twice)", "test_plain_2_processes_side_by_side",
     "test_plain_1_process", "<=", None),
    ("measure: Ray 1 worker of 2 CPUs / --engine local", "test_measure_ray_1_worker_2_threads", "test_measure_local",
     "<=", 1.1),
]
# (what, benchmark, ceiling on its median in seconds)
ABSOLUTE_TARGETS = [
    ("fennec.fit, 10k models x 1k tasks at 5% density", "test_fennec_fit_10k_x_1k", 60.0),
    ("Ranker.rank over 1M models, task vector known", "test_fennec_rank_1m", 0.020),
    ("archi2vec embed, 1,000 graphs of ~300 nodes", "test_fennec_archi2vec_embed", 1.0),
    ("Zoo.add_history, one row at 1,000,000 stored results", "test_zoo_add_history_row_1m", 0.020),
]
NUMPY_POOL = ("test_numpy_pool_sorted_reduceat", "test_numpy_pool_onehot_matmul", "test_numpy_pool_per_class")


def pytest_configure(config):
    config._fennec_extra = {}


@pytest.fixture(scope="session")
def extra_report(request):
    """A dict printed with the ratio table (peak memory and the like)."""
    return request.config._fennec_extra


def _medians(config):
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return {}
    out = {}
    for bench in session.benchmarks:
        if bench:
            out[bench.name] = bench.stats.median
    pools = [out[name] for name in NUMPY_POOL if name in out]
    if pools:
        out["fastest_numpy_pool"] = min(pools)
    return out


def pytest_terminal_summary(terminalreporter, config):
    medians = _medians(config)
    if not medians and not config._fennec_extra:
        return
    rows = []
    terminalreporter.section("fennec: ratios of median times (same run, same machine)")
    for what, slow, fast, sense, target in TARGETS:
        if slow not in medians or fast not in medians:
            continue
        ratio = medians[slow] / medians[fast]
        if target is None:
            verdict = "(reported)"
        elif sense == ">=":
            verdict = "meets" if ratio >= target else "MISSES"
        else:
            verdict = "meets" if ratio <= target else "MISSES"
        shown = "" if target is None else f"{sense} {target}"
        terminalreporter.write_line(f"{what:58s} {ratio:7.2f}x  target {shown:8s} {verdict}")
        rows.append({"what": what, "ratio": ratio, "target": target, "sense": sense, "verdict": verdict})
    pair, one = medians.get("test_plain_2_processes_side_by_side"), medians.get("test_plain_1_process")
    if pair and one:
        ceiling = 2 * one / pair
        terminalreporter.write_line(f"{'measure: this machine caps a second worker at 2 x 1 / pair':58s} "
                                    f"{ceiling:7.2f}x  (reported)")
        rows.append({"what": "measure: second-worker ceiling on this machine", "ratio": ceiling, "target": None,
                     "sense": ">=", "verdict": "(reported)"})
    for what, name, ceiling in ABSOLUTE_TARGETS:
        if name in medians:
            verdict = "meets" if medians[name] <= ceiling else "MISSES"
            terminalreporter.write_line(f"{what:58s} {medians[name]:7.3f}s  target <= {ceiling:g}s {verdict}")
            rows.append({"what": what, "seconds": medians[name], "target": ceiling, "sense": "<=", "verdict": verdict})
    for key, value in config._fennec_extra.items():
        terminalreporter.write_line(f"{key:58s} {value}")
    path = os.environ.get("FENNEC_BENCH_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump({"ratios": rows, "extra": config._fennec_extra, "medians_s": medians}, fh, indent=2)


@pytest.fixture(scope="session")
def zoo_matrix():
    """1,000,000 model vectors of dimension 64, float32 (256 MB)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((1_000_000, 64), dtype=np.float32)
