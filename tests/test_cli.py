"""The fennec command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys


def fennec(*args):
    return subprocess.run([sys.executable, "-m", "fennec", *args], capture_output=True, text=True, timeout=300)


def test_info_json():
    out = fennec("info", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["simd_level"] in info["simd_supported"]


def test_demo_ranks_and_matches_numpy():
    out = fennec("demo", "--models", "20000", "--dim", "16", "--k", "5", "--repeat", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["matches_numpy"] is True
    assert [row["rank"] for row in result["top"]] == [1, 2, 3, 4, 5]
    scores = [row["score"] for row in result["top"]]
    assert scores == sorted(scores, reverse=True)


def test_demo_bad_argument_is_a_clear_error():
    out = fennec("demo", "--models", "100", "--k", "0")
    assert out.returncode == 2
    assert "k must be >= 1" in out.stderr
