"""The zoo store: schema, bad input refused, all-or-nothing writes, and crash-safe fitted state."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fennec
from fennec import zoo as zoo_module
from fennec.history import History, HistoryError, HistoryWarning, read_history
from fennec.zoo import SCHEMA_VERSION, Zoo, ZooError


def shared_benchmarks() -> Path | None:
    candidates = [Path(os.environ["FENNEC_SHARED"])] if os.environ.get("FENNEC_SHARED") else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    return next((root / "benchmarks" for root in candidates if (root / "benchmarks").is_dir()), None)


BENCH = shared_benchmarks()
needs_bench = pytest.mark.skipif(BENCH is None, reason="../shared/benchmarks is not present")


@pytest.fixture
def zoo(tmp_path):
    with Zoo.create(tmp_path / "zoo") as z:
        yield z


def small_history(n_models=3, n_tasks=2, kind="finetune") -> History:
    rng = np.random.default_rng(0)
    return History.from_matrix(
        [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)], rng.random((n_models, n_tasks)), kind=kind
    )


def snapshot(z: Zoo) -> tuple:
    """Everything stored, for before/after comparisons."""
    con = sqlite3.connect(z.path / "zoo.sqlite")
    try:
        return tuple(
            tuple(con.execute(f"SELECT * FROM {table} ORDER BY rowid"))
            for table in ("models", "tasks", "history", "task_descriptors", "meta")
        )
    finally:
        con.close()


def records(h: History) -> list[tuple]:
    """Rows as (model, task, kind, score, source), independent of how names are indexed."""
    sources = h.source or ("",) * len(h)
    return [
        (h.models[m], h.tasks[t], k, float(s), src)
        for m, t, k, s, src in zip(h.model_index, h.task_index, h.row_kinds(), h.scores, sources)
    ]


def run_python(code: str) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter that imports this same fennec."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(fennec.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


# -- opening -------------------------------------------------------------------


def test_create_and_open(tmp_path):
    path = tmp_path / "zoo"
    Zoo.create(path).close()
    with Zoo.open(path) as z:
        assert z.schema_version == SCHEMA_VERSION
        assert z._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert z._con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert z.models() == [] and z.fitted_version() is None
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


def test_create_refuses_an_existing_zoo_and_a_file(tmp_path):
    Zoo.create(tmp_path / "zoo").close()
    with pytest.raises(ZooError, match=r"zoo: a zoo already exists there"):
        Zoo.create(tmp_path / "zoo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ZooError, match=r"file: exists and is not a folder"):
        Zoo.create(tmp_path / "file")


def test_open_names_the_path_when_it_is_not_a_zoo(tmp_path):
    with pytest.raises(ZooError, match=r"missing: no such folder"):
        Zoo.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ZooError, match=r"plain: not a zoo \(no zoo\.sqlite in it\)"):
        Zoo.open(tmp_path / "plain")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "zoo.sqlite").write_bytes(b"not a database at all" * 10)
    with pytest.raises(ZooError, match=r"junk: not a zoo"):
        Zoo.open(tmp_path / "junk")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "zoo.sqlite").execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
    with pytest.raises(ZooError, match=r"other: not a zoo \(no schema version"):
        Zoo.open(tmp_path / "other")


def test_open_refuses_a_newer_schema(tmp_path):
    Zoo.create(tmp_path / "zoo").close()
    con = sqlite3.connect(tmp_path / "zoo" / "zoo.sqlite")
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.close()
    with pytest.raises(ZooError, match=rf"zoo: zoo schema version {SCHEMA_VERSION + 1} is newer"):
        Zoo.open(tmp_path / "zoo")


# -- models and tasks ------------------------------------------------------------


def test_models_round_trip_with_extra_json(zoo):
    zoo.add_models(
        [
            {"id": "google/vit", "architecture": "ViT", "family": "vit", "n_params": 86e6, "input_size": 224,
             "license": "apache-2.0", "source_dataset": "imagenet-21k", "labels": ["a", "b"], "accuracy": 0.9},
            {"id": "resnet50", "n_params": 25_557_032, "extra": {"accuracy": 0.8}},
        ]
    )
    rows = zoo.models()
    assert [r["id"] for r in rows] == ["google/vit", "resnet50"]
    assert rows[0]["extra"] == {"labels": ["a", "b"], "accuracy": 0.9} and rows[0]["input_size"] == 224
    assert rows[1]["architecture"] is None and rows[1]["n_params"] == 25_557_032.0
    table = zoo.model_table()
    assert table.keys == ("google/vit", "resnet50")
    np.testing.assert_array_equal(table.numeric["accuracy"], [0.9, 0.8])
    assert table.categorical["family"] == ("vit", "")
    x, columns = table.design_matrix(table.keys)
    assert x.shape == (2, len(columns))


def test_add_models_refuses_bad_rows_and_keeps_what_was_stored(zoo):
    zoo.add_models([{"id": "a", "family": "vit"}])
    before = snapshot(zoo)
    bad_batches = [
        ([{"id": "b"}, {"id": "c"}, {"id": "b"}], r"add_models: id 'b' appears twice"),
        ([{"id": "b"}, {"id": "a"}], r"add_models: id 'a' is already in the zoo \(pass replace=True"),
        ([{"id": "b", "n_params": "big"}], r"'b': n_params must be a number"),
        ([{"id": "b", "n_params": float("nan")}], r"'b': n_params must be finite"),
        ([{"id": "b", "input_size": 2.5}], r"'b': input_size must be a non-negative integer"),
        ([{"id": "b", "family": 3}], r"'b': family must be text"),
        ([{"id": ""}], r"row 0 needs an 'id'"),
        ([{"family": "x"}], r"row 0 needs an 'id'"),
        ([{"id": "b", "weights": object()}], r"'b': extra fields must be JSON-serialisable"),
        ([{"id": "b", "score": float("inf")}], r"'b': extra fields must be JSON-serialisable"),
    ]
    for rows, message in bad_batches:
        with pytest.raises(ZooError, match=message):
            zoo.add_models(rows)
        assert snapshot(zoo) == before
    with pytest.raises(TypeError, match="single dict"):
        zoo.add_models({"id": "x"})
    zoo.add_models([{"id": "a", "family": "swin"}], replace=True)
    assert zoo.models()[0]["family"] == "swin"


def test_tasks(zoo):
    zoo.add_tasks([{"id": "pets", "n_classes": 37, "n_train": 3680}, {"id": "dtd", "n_classes": 47, "domain": "texture"}])
    assert [t["id"] for t in zoo.tasks()] == ["pets", "dtd"]
    assert zoo.tasks()[1]["extra"] == {"domain": "texture"}
    assert set(zoo.task_table().numeric) == {"n_classes", "n_train"}
    with pytest.raises(ZooError, match=r"add_tasks: id 'pets' is already in the zoo"):
        zoo.add_tasks([{"id": "pets"}])
    with pytest.raises(ZooError, match=r"'x': n_classes must be a non-negative integer"):
        zoo.add_tasks([{"id": "x", "n_classes": -1}])


# -- history -------------------------------------------------------------------


def test_add_history_adds_bare_ids_and_reads_back(zoo):
    h = small_history()
    assert zoo.add_history(h, source="paper") == 6
    assert [m["id"] for m in zoo.models()] == ["m0", "m1", "m2"]
    back = zoo.history()
    np.testing.assert_array_equal(back.matrix(), h.matrix())
    assert back.source == ("paper",) * 6
    assert zoo.history_kinds() == ["finetune"]


def test_history_lists_models_without_results(zoo):
    zoo.add_models([{"id": "cold", "family": "vit"}])
    zoo.add_history(small_history())
    h = zoo.history()
    assert h.models == ("cold", "m0", "m1", "m2")
    assert not h.observed_mask()[0].any()


def test_add_history_strict_refuses_unknown_ids(zoo):
    zoo.add_models([{"id": "m0"}])
    before = snapshot(zoo)
    with pytest.raises(ZooError, match=r"history: 2 unknown model id\(s\): 'm1', 'm2'"):
        zoo.add_history(small_history(), strict=True)
    assert snapshot(zoo) == before


def test_add_history_conflicts_and_replace(zoo):
    h = small_history()
    zoo.add_history(h)
    before = snapshot(zoo)
    with pytest.raises(ZooError, match=r"a finetune result for model 'm0' on task 't0' is already stored"):
        zoo.add_history(h)
    assert snapshot(zoo) == before
    changed = History.from_matrix(h.models, h.tasks, h.matrix() + 1)
    zoo.add_history(changed, replace=True)
    np.testing.assert_allclose(zoo.history().matrix(), h.matrix() + 1)
    assert zoo.history().tasks == h.tasks  # an upsert keeps the stored order


def test_kinds_are_kept_apart(zoo):
    h = small_history()
    zoo.add_history(h)
    zoo.add_history(h, kind="logme")  # same pairs, another kind: no conflict
    assert zoo.history_kinds() == ["finetune", "logme"]
    assert zoo.history("logme").kinds == ("logme",)
    with pytest.raises(ZooError, match="would relabel rows of kinds"):
        zoo.add_history(small_history(kind="logme"), kind="linear_probe")
    zoo.add_history(small_history(kind="linear_probe"))
    assert zoo.history("linear_probe").kinds == ("linear_probe",)
    assert zoo.history("nothing").n_tasks == 0


def test_add_history_bad_input(zoo):
    with pytest.raises(ZooError, match="history: is empty"):
        zoo.add_history(History(("a",), ("t",), [], [], []))
    with pytest.raises(TypeError, match="history: expected a History"):
        zoo.add_history(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="kind"):
        zoo.add_history(small_history(), kind="")
    # A History whose scores were altered after its own checks is still refused, row by row.
    tampered = small_history()
    scores = tampered.scores.copy()
    scores[4] = np.nan
    object.__setattr__(tampered, "scores", scores)
    before = snapshot(zoo)
    with pytest.raises(ZooError, match=r"history: row 4 \('m2', 't0'\) has score nan; scores must be finite"):
        zoo.add_history(tampered)
    assert snapshot(zoo) == before


@pytest.mark.parametrize("error", [ZooError("row 500 is bad"), KeyboardInterrupt()])
def test_failure_in_the_middle_of_add_history_writes_nothing(zoo, monkeypatch, error):
    zoo.add_history(History.from_matrix(["old"], ["t0", "t1"], [[1.0, 2.0]]))
    before = snapshot(zoo)
    big = small_history(n_models=100, n_tasks=10)  # 1000 rows, new models and tasks
    real_check = zoo_module._check_history_row

    def check(i, row):
        if i == 499:
            raise error
        real_check(i, row)

    monkeypatch.setattr(zoo_module, "_check_history_row", check)
    with pytest.raises(type(error)):
        zoo.add_history(big)
    assert snapshot(zoo) == before  # not even the bare model and task rows
    monkeypatch.undo()
    zoo.add_history(big)  # the connection is still usable
    assert len(zoo.history()) == 1002


def test_process_killed_in_the_middle_of_add_history(tmp_path):
    path = tmp_path / "zoo"
    with Zoo.create(path) as z:
        z.add_history(small_history())
        before = snapshot(z)
    result = run_python(
        f"""
        import os
        from fennec import zoo as zm
        from fennec.history import History
        import numpy as np
        def die(i, row):
            if i == 499:
                os._exit(7)  # no cleanup, no rollback: as if the power went out
        zm._check_history_row = die
        z = zm.Zoo.open({str(path)!r})
        z.add_history(History.from_matrix([f"n{{i}}" for i in range(100)], [f"u{{j}}" for j in range(10)],
                                          np.ones((100, 10))))
        """
    )
    assert result.returncode == 7, result.stderr
    with Zoo.open(path) as z:
        assert snapshot(z) == before
        assert len(z.history()) == 6


def test_import_export_import_round_trip(zoo, tmp_path):
    text = (
        "model,task,score,kind,source\n"
        '"org/a,1",cifar10,0.91,,paper\n'
        "b,cifar10,0.9,,\n"
        "a2,cifar10,0.5,logme,\n"
        "b,cifar10,0.25,logme,\n"
        "b,pets,0.1234567890123,,run 3\n"
        '"org/a,1",pets,0.2,,\n'
    )
    (tmp_path / "in.csv").write_text(text)
    first = zoo.import_history_csv(tmp_path / "in.csv")
    zoo.export_history_csv(tmp_path / "ft.csv")
    zoo.export_history_csv(tmp_path / "logme.csv", kind="logme")
    exported = records(read_history(tmp_path / "ft.csv")) + records(read_history(tmp_path / "logme.csv"))
    assert sorted(exported) == sorted(records(first))
    with Zoo.create(tmp_path / "again") as again:
        again.import_history_csv(tmp_path / "ft.csv")
        again.import_history_csv(tmp_path / "logme.csv")
        for kind in ("finetune", "logme"):
            assert records(again.history(kind)) == records(zoo.history(kind))
            assert again.history(kind).tasks == zoo.history(kind).tasks


def test_wide_export_round_trip(zoo, tmp_path):
    h = History.from_matrix(["a", "b", "c"], ["x", "y"], [[1.0, np.nan], [2.0, 3.0], [4.0, 5.5]])
    h.to_wide_csv(tmp_path / "in.csv")
    zoo.import_history_csv(tmp_path / "in.csv", wide=True)
    zoo.export_history_csv(tmp_path / "out.csv", wide=True)
    assert (tmp_path / "in.csv").read_text() == (tmp_path / "out.csv").read_text()
    assert read_history(tmp_path / "out.csv", wide=True) == h


def test_import_is_all_or_nothing(zoo, tmp_path):
    zoo.add_history(small_history())
    before = snapshot(zoo)
    rows = "".join(f"n{i},t0,{i / 1000}\n" for i in range(600))
    (tmp_path / "bad.csv").write_text("model,task,score\n" + rows + "late,t0,oops\n")
    with pytest.raises(HistoryError, match=r"bad\.csv: line 602: score 'oops' is not a number"):
        zoo.import_history_csv(tmp_path / "bad.csv")
    assert snapshot(zoo) == before
    (tmp_path / "dup.csv").write_text("model,task,score\nm0,t0,0.5\nm0,t0,0.6\nz,t0,1\n")
    with pytest.raises(HistoryError, match=r"line 3: .* repeats line 2"):
        zoo.import_history_csv(tmp_path / "dup.csv", strict=True)
    with pytest.raises(ZooError, match="already stored"):
        with pytest.warns(HistoryWarning, match="averaged"):  # read first, then refused
            zoo.import_history_csv(tmp_path / "dup.csv")
    assert snapshot(zoo) == before


@needs_bench
def test_real_records_round_trip(zoo, tmp_path):
    records = BENCH / "transfergraph_image" / "records.csv"
    h = zoo.import_history_csv(records, task_col="finetuned_dataset", score_col="eval_accuracy")
    assert zoo.history() == h
    zoo.export_history_csv(tmp_path / "out.csv")
    assert read_history(tmp_path / "out.csv") == h


# -- task descriptors ------------------------------------------------------------


def test_task_descriptors(zoo):
    zoo.add_tasks([{"id": "pets"}, {"id": "dtd"}])
    zoo.set_task_descriptor("pets", np.array([0.5, -1.25, 3.0]))
    zoo.set_task_descriptor("dtd", np.arange(4, dtype=np.float32))
    got = zoo.task_descriptor("pets")
    assert got.dtype == np.float32 and got.tolist() == [0.5, -1.25, 3.0]
    blob, dim = zoo._con.execute("SELECT vector, dim FROM task_descriptors WHERE task = 'pets'").fetchone()
    assert dim == 3 and blob == np.array([0.5, -1.25, 3.0], dtype="<f4").tobytes()
    zoo.set_task_descriptor("pets", [1.0, 2.0])  # replacing is allowed
    assert list(zoo.task_descriptors()) == ["pets", "dtd"]
    assert zoo.task_descriptors()["pets"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "vector, error, message",
    [
        (np.arange(3), TypeError, r"vector: expected a float array, got dtype int64"),
        (np.array(["a"]), TypeError, r"expected a float array"),
        (np.ones((2, 2)), ValueError, r"vector: expected a non-empty 1-D array, got shape \(2, 2\)"),
        (np.zeros(0), ValueError, r"non-empty 1-D"),
        (np.array([1.0, np.nan]), ValueError, r"vector: contains NaN or inf"),
        (np.array([1e300]), ValueError, r"beyond float32 range"),
    ],
)
def test_bad_descriptors_are_refused(zoo, vector, error, message):
    zoo.add_tasks([{"id": "pets"}])
    zoo.set_task_descriptor("pets", np.ones(2))
    with pytest.raises(error, match=message):
        zoo.set_task_descriptor("pets", vector)
    assert zoo.task_descriptor("pets").tolist() == [1.0, 1.0]


def test_descriptor_of_unknown_task(zoo):
    zoo.add_tasks([{"id": "pets"}])
    with pytest.raises(ZooError, match=r"unknown task 'cars' \(add it with add_tasks first\)"):
        zoo.set_task_descriptor("cars", np.ones(2))
    with pytest.raises(ZooError, match=r"'pets' has no descriptor"):
        zoo.task_descriptor("pets")
    with pytest.raises(ZooError, match=r"'cars' is not in the zoo"):
        zoo.task_descriptor("cars")


# -- fitted state ----------------------------------------------------------------


def test_fitted_state_round_trip(zoo):
    with pytest.raises(ZooError, match="no fitted state yet"):
        zoo.read_fitted()
    state = {"model_vectors": np.arange(12.0).reshape(4, 3), "ids": np.arange(4), "empty": np.zeros((0, 3))}
    assert zoo.write_fitted(state, {"rank": 3, "models": ["a", "b"]}) == 1
    arrays, meta = zoo.read_fitted()
    assert meta == {"rank": 3, "models": ["a", "b"]} and zoo.fitted_version() == 1
    assert set(arrays) == set(state)
    for name, array in state.items():
        np.testing.assert_array_equal(arrays[name], array)
    assert isinstance(arrays["model_vectors"], np.memmap)
    with pytest.raises(ValueError):
        arrays["model_vectors"][0, 0] = 1.0


def test_old_fitted_folders_are_removed_but_the_previous_stays(zoo):
    for i in range(4):
        zoo.write_fitted({"v": np.full(3, float(i))}, {"i": i})
    names = sorted(p.name for p in zoo.path.iterdir() if p.name.startswith("fitted-"))
    assert names == ["fitted-3", "fitted-4"]
    assert json.loads((zoo.path / "fitted.json").read_text())["dir"] == "fitted-4"


def test_a_reader_keeps_its_state_while_new_ones_are_written(zoo, tmp_path):
    zoo.write_fitted({"v": np.zeros(1000)}, {"i": 0})
    arrays, meta = zoo.read_fitted()
    other = Zoo.open(zoo.path)
    for i in range(1, 4):
        other.write_fitted({"v": np.full(1000, float(i))}, {"i": i})
    assert meta == {"i": 0} and float(arrays["v"].sum()) == 0.0  # mapped files outlive removal
    assert zoo.fitted_version() == 4 and zoo.read_fitted()[1] == {"i": 3}
    other.close()


def test_bad_fitted_input(zoo):
    zoo.write_fitted({"v": np.ones(2)}, {})
    with pytest.raises(ValueError, match=r"state: array name '\.\./x'"):
        zoo.write_fitted({"../x": np.ones(2)}, {})
    with pytest.raises(TypeError, match=r"state\['o'\]: expected a numeric or text array, got dtype object"):
        zoo.write_fitted({"o": np.array([{}, 1], dtype=object)}, {})
    with pytest.raises(ValueError, match="meta: must be JSON-serialisable"):
        zoo.write_fitted({"v": np.ones(2)}, {"x": float("nan")})
    with pytest.raises(ValueError, match="state: is empty"):
        zoo.write_fitted({}, {})
    assert zoo.fitted_version() == 1
    assert not [p for p in zoo.path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("stage", ["after_rename", "during_arrays"])
def test_process_killed_in_the_middle_of_write_fitted(tmp_path, stage):
    path = tmp_path / "zoo"
    with Zoo.create(path) as z:
        z.write_fitted({"v": np.arange(5.0), "w": np.ones((2, 2))}, {"version": "old"})
    if stage == "after_rename":
        hook = "zm._switch_pointer = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)"
    else:
        hook = textwrap.dedent(
            """
            real_save = np.save
            def save(fh, array, **kw):
                if array.size == 7:
                    os.kill(os.getpid(), signal.SIGKILL)
                real_save(fh, array, **kw)
            np.save = save
            """
        )
    code = "import os, signal\nimport numpy as np\nfrom fennec import zoo as zm\n" + hook + textwrap.dedent(
        f"""
        z = zm.Zoo.open({str(path)!r})
        z.write_fitted({{"v": np.full(5, 9.0), "x": np.ones(7)}}, {{"version": "new"}})
        """
    )
    result = run_python(code)
    assert result.returncode == -9, result.stderr
    with Zoo.open(path) as z:
        assert z.fitted_version() == 1
        arrays, meta = z.read_fitted()
        assert meta == {"version": "old"} and set(arrays) == {"v", "w"}
        np.testing.assert_array_equal(arrays["v"], np.arange(5.0))
        # The next write works, and clears what the dead writer left.
        assert z.write_fitted({"v": np.zeros(1)}, {"version": "next"}) >= 2
        assert z.read_fitted()[1] == {"version": "next"}
        leftovers = sorted(p.name for p in path.iterdir() if p.name.startswith((".fitted", "fitted-")))
        assert leftovers == ["fitted-1", f"fitted-{z.fitted_version()}"]


def test_damaged_pointer_is_reported(zoo):
    zoo.write_fitted({"v": np.ones(2)}, {})
    pointer = json.loads((zoo.path / "fitted.json").read_text())
    (zoo.path / "fitted.json").write_text(json.dumps({**pointer, "arrays": ["v", "gone"]}))
    with pytest.raises(ZooError, match=r"fitted-1: named by fitted\.json but .*gone\.npy is missing"):
        zoo.read_fitted()
    (zoo.path / "fitted.json").write_text('{"version": 1, "dir": "../etc", "arrays": []}')
    with pytest.raises(ZooError, match=r"fitted\.json: damaged pointer file"):
        zoo.read_fitted()


# -- the cost of a write -------------------------------------------------------


def _sqlite_steps_of_one_row(z: Zoo, i: int) -> int:
    """SQLite virtual-machine work (in units of 100 instructions) of adding one result."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    z._con.set_progress_handler(count, 100)
    try:
        z.add_history(History.from_rows([(f"m{i}", f"new{i}", 1.0)]))
    finally:
        z._con.set_progress_handler(None, 0)
    return steps[0]


def test_one_history_row_costs_the_same_on_a_small_and_a_large_zoo(tmp_path):
    # Counted in SQLite instructions rather than seconds, so the check is exact on a busy machine:
    # a write that read the whole history would cost 40 times more on the larger zoo.
    costs = []
    for n_models in (10, 400):
        with Zoo.create(tmp_path / f"zoo{n_models}") as z:
            z.add_history(small_history(n_models, 50))
            costs.append(min(_sqlite_steps_of_one_row(z, i) for i in range(3)))
    assert costs[1] <= 2 * costs[0] + 5, costs


def test_a_conflict_in_the_middle_of_a_batch_is_named_and_nothing_is_written(zoo):
    zoo.add_history(History.from_rows([("m1", "t1", 1.0)]))
    before = snapshot(zoo)
    rows = [("m0", "t0", 1.0), ("m0", "t1", 2.0), ("m1", "t1", 3.0), ("m2", "t9", 4.0)]
    with pytest.raises(ZooError, match=r"a finetune result for model 'm1' on task 't1' is already stored"):
        zoo.add_history(History.from_rows(rows))
    assert snapshot(zoo) == before
    zoo.add_history(History.from_rows(rows), replace=True)
    assert len(zoo.history()) == 4


# -- ids -------------------------------------------------------------------------

BAD_IDS = [
    ("mobilenet_v2\x00", r"non-printable character U\+0000 at position 12"),
    ("a\tb", r"non-printable character U\+0009"),
    ("a\u200bb", r"non-printable character U\+200B"),  # zero-width space: looks like 'ab'
    (" resnet50", "begins or ends with whitespace"),
    ("x" * 50_000, r"50,000 characters; an id is at most 256"),
    ("x" * 257, r"257 characters; an id is at most 256"),
]


@pytest.mark.parametrize("bad, message", BAD_IDS, ids=["nul", "tab", "zero-width", "padded", "50000", "257"])
def test_every_way_into_the_zoo_refuses_a_bad_id_and_stores_nothing(zoo, tmp_path, bad, message):
    zoo.add_history(small_history())
    before = snapshot(zoo)
    attempts = [
        lambda: zoo.add_models([{"id": "fine"}, {"id": bad}]),
        lambda: zoo.add_tasks([{"id": bad, "n_classes": 10}]),
        lambda: zoo.add_history(History.from_rows([("m0", "t9", 1.0), (bad, "t0", 2.0)])),
        lambda: zoo.add_history(History.from_rows([("m0", bad, 1.0)])),
        lambda: zoo.add_history(History.from_matrix(["m0", bad], ["t0"], [[1.0], [2.0]])),
    ]
    padded = bad != bad.strip()
    for attempt in attempts:
        # A History already refused padded names; the CSV readers strip cells (below).
        with pytest.raises(ValueError, match=message + ("|without surrounding spaces" if padded else "")):
            attempt()
        assert snapshot(zoo) == before
    if padded:
        return
    long_csv = tmp_path / "long.csv"
    History.from_rows([("m0", "t9", 1.0), ("m1", "t9", 2.0)]).to_long_csv(long_csv)
    long_csv.write_text(long_csv.read_text() + f'"{bad}",t9,3.0\n', encoding="utf-8")
    wide_csv = tmp_path / "wide.csv"
    wide_csv.write_text(f'model,t9,"{bad}"\nm0,1,2\nm1,2,3\n', encoding="utf-8")
    for path, wide in ((long_csv, False), (wide_csv, True)):
        with pytest.raises(HistoryError, match=message):
            zoo.import_history_csv(path, wide=wide)
        assert snapshot(zoo) == before


def test_an_id_at_the_limit_and_any_printable_text_are_kept_exactly(zoo):
    ids = ["x" * 256, "日本語 model/1", "vit_b16@in21k (v2)", "m\u00e9"]
    zoo.add_models([{"id": i} for i in ids])
    zoo.add_history(History.from_matrix(ids, ["t0", "t1"], np.arange(8.0).reshape(4, 2)))
    fennec.fit(zoo)
    state, _ = zoo.read_fitted()
    assert [str(m) for m in state["model_ids"]] == ids


def test_a_fit_refuses_ids_that_would_read_back_as_another(zoo):
    """A zoo written before ids were checked: a trailing NUL would make two models one."""
    zoo.add_history(small_history(4, 2))
    fennec.fit(zoo)
    version = zoo.fitted_version()
    con = sqlite3.connect(zoo.path / "zoo.sqlite")
    with con:
        con.execute("INSERT INTO models (id) VALUES (?)", ("m0\x00",))
        con.executemany("INSERT INTO history (model, task, score, kind) VALUES (?, ?, ?, 'finetune')",
                        [("m0\x00", "t0", 0.5), ("m0\x00", "t1", 0.25)])
    con.close()
    with pytest.raises(ValueError, match=r"'m0\\x00' would read back from storage as 'm0'"):
        fennec.fit(zoo)
    assert zoo.fitted_version() == version  # the fitted state in use is kept
    assert len(zoo.history()) == 10  # and nothing stored was lost


def test_stored_ids_must_round_trip():
    from fennec.space import TransferSpace

    def space(models):
        n = len(models)
        return TransferSpace(normalization="gauss", ridge=None, model_vectors=np.zeros((n, 1), np.float32),
                             interaction=None, task_mean=None, task_scale=None, normalized=np.zeros((n, 1)),
                             models=tuple(models), tasks=("t",))

    assert list(space(["a", "b"]).to_arrays()[0]["model_ids"]) == ["a", "b"]
    with pytest.raises(ValueError, match="would read back"):
        space(["mobilenet_v2", "mobilenet_v2\x00"]).to_arrays()
    with pytest.raises(ValueError, match="listed twice"):
        space(["a", "a"]).to_arrays()


# -- waiting for another writer of fitted state -------------------------------


@pytest.fixture
def frozen_lock_holder(tmp_path):
    """A second process that takes the zoo's fitted.lock and is then stopped (SIGSTOP), as a frozen
    fit would be; yields the zoo's folder, kills the holder at the end."""
    import signal

    if zoo_module.fcntl is None:
        pytest.skip("no fcntl: writers of fitted state are not serialised on this platform")
    path = tmp_path / "zoo"
    Zoo.create(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            fh = open({str(path / "fitted.lock")!r}, "a+b")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)
        yield path
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_write_of_fitted_state_waits_for_a_held_lock_with_a_notice_and_a_timeout(
        frozen_lock_holder, monkeypatch, capsys):
    monkeypatch.setattr(zoo_module, "LOCK_NOTICE_AFTER", 0.2)
    lock = frozen_lock_holder / "fitted.lock"
    with Zoo.open(frozen_lock_holder) as z:
        started = time.monotonic()
        with pytest.raises(ZooError, match=rf"{re.escape(str(lock))}: another process has held this lock for "
                                           r"over 1 s.*fuser.*pass lock_timeout= with more seconds"):
            z.write_fitted({"v": np.arange(3.0)}, {}, lock_timeout=1.0)
        assert 1.0 <= time.monotonic() - started < 10
        err = capsys.readouterr().err
        assert err.count("fennec: waiting for") == 1, err  # said once, not on every poll
        assert f"waiting for {lock}: another process holds it" in err and "giving up after 1 s" in err
        assert z.fitted_version() is None and not list(frozen_lock_holder.glob(".fitted-*"))
        with pytest.raises(ValueError, match="lock_timeout: expected a number of seconds >= 0"):
            z.write_fitted({"v": np.arange(3.0)}, {}, lock_timeout=-1)


def test_a_write_of_fitted_state_goes_ahead_once_the_lock_is_free(tmp_path, capsys):
    with Zoo.create(tmp_path / "zoo") as z:
        holder = open(z.path / "fitted.lock", "a+b")
        zoo_module.fcntl.flock(holder.fileno(), zoo_module.fcntl.LOCK_EX)
        release = threading.Timer(0.3, holder.close)  # closing the file releases its lock
        release.start()
        assert z.write_fitted({"v": np.arange(3.0)}, {}, lock_timeout=30) == 1
        release.join()
    assert "waiting" not in capsys.readouterr().err  # shorter than the notice's delay
