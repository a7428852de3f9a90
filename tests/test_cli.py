"""The fennec command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


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


def test_zoo_commands_end_to_end(tmp_path):
    history = tmp_path / "history.csv"
    rows = ["model,task,score"]
    rng = np.random.default_rng(0)
    for m in range(8):
        for t in range(5):
            rows.append(f"m{m},t{t},{60 + 3 * m + rng.normal():.3f}")
    history.write_text("\n".join(rows) + "\n")
    zoo = str(tmp_path / "zoo")
    assert fennec("zoo", "create", zoo).returncode == 0
    out = fennec("zoo", "import", zoo, "--history", str(history))
    assert out.returncode == 0 and "40 results" in out.stdout, out.stderr
    out = fennec("zoo", "fit", zoo, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_tasks"] == 5
    out = fennec("rank", "--zoo", zoo, "--k", "3", "--json")
    assert out.returncode == 0, out.stderr
    ranking = json.loads(out.stdout)
    assert "prior" in ranking["basis"]
    assert [r["model"] for r in ranking["rows"]] == ["m7", "m6", "m5"]
    out = fennec("rank", "--zoo", zoo, "--observed", "m7=1", "--observed", "m6=90", "--json")
    ranking = json.loads(out.stdout)
    assert ranking["rows"][0]["model"] == "m6" and ranking["rows"][0]["observed"] == 90.0
    out = fennec("rank", "--zoo", str(tmp_path / "missing"))
    assert out.returncode == 2 and "missing" in out.stderr


def test_zoo_import_reports_the_bad_line(tmp_path):
    history = tmp_path / "bad.csv"
    history.write_text("model,task,score\na,t1,0.5\nb,t1,oops\n")
    zoo = str(tmp_path / "zoo")
    fennec("zoo", "create", zoo)
    out = fennec("zoo", "import", zoo, "--history", str(history))
    assert out.returncode == 2
    assert "bad.csv" in out.stderr and "line 3" in out.stderr
