"""The built module: what it reports about itself, SIMD choice, and CUDA availability."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fennec
from fennec import _core, kernels


def test_build_info_reports_the_build():
    info = fennec.build_info()
    assert info["simd_level"] in info["simd_supported"]
    assert "generic" in info["simd_supported"]
    assert info["hardware_threads"] >= 1
    assert isinstance(info["cuda_compiled"], bool)
    assert info["cuda_compiled"] == kernels.CUDA_COMPILED
    if not info["cuda_compiled"]:
        assert info["cuda_devices"] == [] and info["cuda_version"] is None
    assert info["compiler"]


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_simd_level_can_be_forced_from_the_environment():
    out = _run("import fennec; print(fennec.build_info()['simd_level'])", FENNEC_SIMD="generic")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "generic"


def test_unknown_simd_level_is_a_clear_error():
    out = _run("import fennec", FENNEC_SIMD="sse9")
    assert out.returncode != 0
    assert "FENNEC_SIMD=sse9 is not a SIMD level" in out.stderr
    with pytest.raises(ValueError, match="SIMD level 'sse9' is not supported"):
        _core.set_simd_level("sse9")


def test_every_simd_level_agrees():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5000, 45)).astype(np.float32)
    q = rng.standard_normal((6, 45)).astype(np.float32)
    results = {}
    try:
        for level in fennec.build_info()["simd_supported"]:
            _core.set_simd_level(level)
            results[level] = kernels.topk(v, q, 10)
    finally:
        _core.set_simd_level("auto")
    base = results["generic"]
    for level, (scores, indices) in results.items():
        np.testing.assert_allclose(scores, base[0], rtol=1e-5, err_msg=level)
        np.testing.assert_array_equal(indices, base[1], err_msg=level)


def test_cuda_device_count_never_raises():
    assert _core.cuda_device_count() >= 0
    assert kernels.cuda_available() == (kernels.CUDA_COMPILED and _core.cuda_device_count() > 0)
