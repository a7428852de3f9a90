"""Shared fixtures: every kernel test runs on the CPU and, where a GPU is present, on CUDA."""

from __future__ import annotations

import os

import pytest

from fennec import _core, kernels


def _cuda_param():
    if kernels.cuda_available():
        return pytest.param("cuda", marks=pytest.mark.cuda)
    reason = "fennec built without CUDA" if not kernels.CUDA_COMPILED else "no CUDA GPU visible"
    if os.environ.get("FENNEC_REQUIRE_CUDA") == "1":
        # A machine that should have a GPU must not pass by skipping.
        return pytest.param("cuda", marks=pytest.mark.cuda)
    return pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skip(reason=reason)])


@pytest.fixture(params=["cpu", _cuda_param()])
def device(request):
    if request.param == "cuda" and not kernels.cuda_available():
        pytest.fail("FENNEC_REQUIRE_CUDA=1 but CUDA is not usable: " + str(kernels.build_info()))
    return request.param


@pytest.fixture(params=_core.build_info()["simd_supported"])
def simd(request):
    """Runs a test once per CPU kernel build this machine supports."""
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level("auto")


@pytest.fixture
def clustered_zoo(tmp_path):
    """Builds zoos whose tasks come in clusters, each cluster with its own model order that
    no metadata explains, every task with a proxy descriptor near its cluster's centre:
    ``make(rng, n_models, clusters, per_cluster, dims) -> (zoo, models, centre, effect)``."""
    import numpy as np

    import fennec
    from fennec.history import History

    def make(rng, n_models, clusters, per_cluster, dims):
        models = [f"m{i}" for i in range(n_models)]
        cluster = np.repeat(np.arange(clusters), per_cluster)
        tasks = [f"t{j}" for j in range(len(cluster))]
        centre = rng.normal(0, 3, (clusters, dims))
        effect = rng.normal(0, 1, (n_models, clusters))
        scores = 70 + 4 * effect[:, cluster] + rng.normal(0, 0.3, (n_models, len(cluster)))
        zoo = fennec.Zoo.create(tmp_path / "clustered")
        zoo.add_models([{"id": m} for m in models])
        zoo.add_tasks([{"id": t} for t in tasks])
        zoo.add_history(History.from_matrix(models, tasks, scores))
        for t, c in zip(tasks, cluster):
            zoo.set_task_descriptor(t, centre[c] + rng.normal(0, 0.3, dims))
        return zoo, models, centre, effect

    return make
