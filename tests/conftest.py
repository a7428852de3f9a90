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
