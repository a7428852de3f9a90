"""Reading histories, side information and distances from CSV: layouts, errors, round trips."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from fennec.history import (
    History,
    HistoryError,
    HistoryFileNotFoundError,
    HistoryWarning,
    SideTable,
    read_distance_matrix,
    read_history,
    read_model_table,
    read_task_table,
)


def shared_benchmarks() -> Path | None:
    candidates = []
    if os.environ.get("FENNEC_SHARED"):
        candidates.append(Path(os.environ["FENNEC_SHARED"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for root in candidates:
        if (root / "benchmarks").is_dir():
            return root / "benchmarks"
    return None


BENCH = shared_benchmarks()
needs_bench = pytest.mark.skipif(BENCH is None, reason="../shared/benchmarks is not present")


def write(tmp_path: Path, text: str, name: str = "history.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


LONG = "model,task,score\nresnet50,cifar10,0.9\nresnet50,pets,0.8\nvit,cifar10,0.95\nvit,pets,0.7\n"


# -- long form ---------------------------------------------------------------


def test_long_form_reads_rows_in_file_order(tmp_path):
    h = read_history(write(tmp_path, LONG))
    assert h.models == ("resnet50", "vit")
    assert h.tasks == ("cifar10", "pets")
    assert h.n_models == 2 and h.n_tasks == 2 and len(h) == 4
    assert h.kind is None and h.source is None and h.kinds == ("finetune",)
    np.testing.assert_array_equal(h.matrix(), [[0.9, 0.8], [0.95, 0.7]])
    assert h.matrix().dtype == np.float64
    assert h.model_index.dtype == np.int64 and h.task_index.dtype == np.int64
    assert h.observed_mask().all()
    with pytest.raises(ValueError):
        h.scores[0] = 1.0  # arrays are read-only


def test_long_form_kind_source_and_ignored_columns(tmp_path):
    text = (
        "epochs,model,task,score,kind,source,lr\n"
        "30,a,t1,0.5,logme,paper,0.1\n"
        "30,b,t1,0.6,,,0.1\n"
        "30,a,t1,0.7,finetune,,0.1\n"
        "30,b,t2,0.1,finetune,run-7,0.1\n"
        "30,a,t2,0.2,,,0.1\n"
        "30,b,t1,0.4,logme,paper,0.1\n"
    )
    h = read_history(write(tmp_path, text))
    assert h.kind == ("logme", "finetune", "finetune", "finetune", "finetune", "logme")
    assert h.source == ("paper", "", "", "run-7", "", "paper")
    assert h.kinds == ("logme", "finetune")
    with pytest.raises(ValueError, match="mixes kinds"):
        h.matrix()
    np.testing.assert_array_equal(h.matrix("finetune"), [[0.7, 0.2], [0.6, 0.1]])
    assert h.select_kind("logme").matrix()[0, 0] == 0.5
    assert h.select_kind("logme").matrix()[1, 0] == 0.4
    assert np.isnan(h.select_kind("logme").matrix()[1, 1])
    lonely = write(tmp_path, "model,task,score,kind\na,t,1,\nb,t,2,\na,t,3,logme\n", "lonely.csv")
    with pytest.warns(HistoryWarning, match=r"line 2: task 't' has a logme score for only one model"):
        read_history(lonely)


def test_transfergraph_records_layout_by_column_names(tmp_path):
    text = (
        ",model,finetuned_dataset,epochs,eval_accuracy\n"
        "0,m1,cifar100,30,0.91\n"
        "1,m2,cifar100,30,0.92\n"
    )
    h = read_history(write(tmp_path, text), task_col="finetuned_dataset", score_col="eval_accuracy")
    assert h.tasks == ("cifar100",) and h.models == ("m1", "m2")
    np.testing.assert_allclose(h.scores, [0.91, 0.92])


def test_missing_column_suggests_the_closest_name(tmp_path):
    path = write(tmp_path, "model,task,scrore\na,t,1\n")
    with pytest.raises(HistoryError, match=r"history\.csv: line 1: no column 'score' \(did you mean 'scrore'\?\)"):
        read_history(path)


def test_missing_column_without_close_name_lists_the_columns(tmp_path):
    path = write(tmp_path, "model,dataset,score\na,t,1\n")
    with pytest.raises(HistoryError, match=r"line 1: no column 'task' \(columns: model, dataset, score\); pass task_col="):
        read_history(path)


def test_named_optional_column_must_exist(tmp_path):
    path = write(tmp_path, "model,task,score,metric\na,t,1,logme\nb,t,2,logme\n")
    with pytest.raises(HistoryError, match=r"line 1: no column 'metrics' \(did you mean 'metric'\?\)"):
        read_history(path, kind_col="metrics")
    assert read_history(path, kind_col="metric").kinds == ("logme",)
    assert read_history(path).kinds == ("finetune",)


def test_column_named_twice_is_an_error(tmp_path):
    path = write(tmp_path, "model,task,score,score\na,t,1,2\n")
    with pytest.raises(HistoryError, match=r"history\.csv: line 1: column 'score' appears 2 times \(columns 3, 4\)"):
        read_history(path)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("abc", r"line 3: score 'abc' is not a number"),
        ("nan", r"line 3: score is nan; scores must be finite"),
        ("-inf", r"line 3: score is -inf; scores must be finite"),
        ("", r"line 3: empty score"),
    ],
)
def test_bad_score_names_file_and_line(tmp_path, cell, message):
    path = write(tmp_path, f"model,task,score\na,t,1\nb,t,{cell}\n")
    with pytest.raises(HistoryError, match=r"history\.csv: " + message):
        read_history(path)


def test_score_range(tmp_path):
    path = write(tmp_path, "model,task,score\na,t,0.5\nb,t,87.5\n")
    with pytest.raises(HistoryError, match=r"line 3: score 87\.5 is outside score_range \[0\.0, 1\.0\]"):
        read_history(path, score_range=(0, 1))
    assert len(read_history(path, score_range=(0, 100))) == 2
    with pytest.raises(ValueError, match="score_range"):
        read_history(path, score_range=(1, 0))
    with pytest.raises(ValueError, match="score_range"):
        read_history(path, score_range="0-1")


@pytest.mark.parametrize(
    "row, message",
    [(" ,t,1", r"line 3: empty model name \(column 'model'\)"), ("b,,1", r"line 3: empty task name \(column 'task'\)")],
)
def test_empty_names(tmp_path, row, message):
    path = write(tmp_path, f"model,task,score\na,t,1\n{row}\n")
    with pytest.raises(HistoryError, match=r"history\.csv: " + message):
        read_history(path)


def test_ragged_long_row(tmp_path):
    path = write(tmp_path, "model,task,score\na,t,1\nb,t,1,extra\n")
    with pytest.raises(HistoryError, match=r"history\.csv: line 3: 4 fields, but the header has 3"):
        read_history(path)


def test_empty_history_and_empty_file(tmp_path):
    with pytest.raises(HistoryError, match=r"history\.csv: no data rows after the header \(empty history\)"):
        read_history(write(tmp_path, "model,task,score\n"))
    with pytest.raises(HistoryError, match=r"empty\.csv: file is empty"):
        read_history(write(tmp_path, "", "empty.csv"))
    with pytest.raises(HistoryError, match=r"blank\.csv: file is empty"):
        read_history(write(tmp_path, "\n  \n", "blank.csv"))


def test_missing_file_folder_and_non_utf8(tmp_path):
    with pytest.raises(HistoryFileNotFoundError, match=r"nope\.csv: no such file") as info:
        read_history(tmp_path / "nope.csv")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    with pytest.raises(HistoryError, match="is a folder"):
        read_history(tmp_path)
    path = tmp_path / "latin1.csv"
    path.write_bytes("model,task,score\na,t,1\ncaf\u00e9,t,2\n".encode("latin-1"))
    with pytest.raises(HistoryError, match=r"latin1\.csv: line 3: not UTF-8 text \(byte 0xe9"):
        read_history(path)


def test_line_numbers_count_blank_lines_quoted_newlines_and_bom(tmp_path):
    # The quoted newline sits in a column that is not an id: ids are printable text.
    text = '\ufeffmodel,task,score,note\n\na,t,1,"multi\nline note"\nb,t,x,\n'
    with pytest.raises(HistoryError, match=r"line 5: score 'x' is not a number"):
        read_history(write(tmp_path, text))
    text = 'model,task,score\r\na,t,1\r\n\r\nb,t,oops\r\n'
    with pytest.raises(HistoryError, match=r"line 4: score 'oops'"):
        read_history(write(tmp_path, text))


def test_duplicates_are_averaged_with_a_warning(tmp_path):
    text = "model,task,score\na,t,1\nb,t,5\na,t,2\na,u,1\nb,u,2\na,u,4\na,t,3\n"
    path = write(tmp_path, text)
    with pytest.warns(HistoryWarning, match=r"history\.csv: 2 \(model, task\) pair\(s\).*averaged; first: \('a', 't'\) on lines 2, 4, 8"):
        h = read_history(path)
    assert len(h) == 4
    np.testing.assert_allclose(h.matrix(), [[2.0, 2.5], [5.0, 2.0]])


def test_duplicates_under_strict_name_both_lines(tmp_path):
    path = write(tmp_path, "model,task,score\na,t,1\nb,t,5\na,t,2\n")
    with pytest.raises(HistoryError, match=r"history\.csv: line 4: model 'a', task 't', kind 'finetune' repeats line 2"):
        read_history(path, strict=True)


def test_same_pair_with_different_kinds_is_not_a_duplicate(tmp_path):
    path = write(tmp_path, "model,task,score,kind\na,t,1,finetune\na,t,2,logme\nb,t,3,finetune\nb,t,4,logme\n")
    h = read_history(path, strict=True)
    assert len(h) == 4


def test_task_seen_by_one_model_warns_and_is_kept(tmp_path):
    path = write(tmp_path, "model,task,score\na,t,1\nb,t,2\na,lonely,3\n")
    with pytest.warns(HistoryWarning, match=r"line 4: task 'lonely' has a score for only one model.*kept"):
        h = read_history(path)
    assert "lonely" in h.tasks
    with pytest.raises(HistoryError, match=r"history\.csv: line 4: task 'lonely' has a score for only one model"):
        read_history(path, strict=True)


# -- wide form ---------------------------------------------------------------

WIDE = "model,cifar10,pets,dtd\nresnet50,0.9,0.8,\nvit,0.95,,0.6\ndeit,0.93,0.75,0.55\n"


def test_wide_form_empty_cells_are_missing(tmp_path):
    h = read_history(write(tmp_path, WIDE), wide=True)
    assert h.models == ("resnet50", "vit", "deit") and h.tasks == ("cifar10", "pets", "dtd")
    m = h.matrix()
    assert np.isnan(m[0, 2]) and np.isnan(m[1, 1]) and m[2, 2] == 0.55
    assert h.observed_mask().sum() == 7


@pytest.mark.parametrize(
    "text, message",
    [
        ("model,a,b\nx,1,2\ny,1\n", r"line 3: 2 fields, but the header has 3"),
        ("model,a,b,a\nx,1,2,3\n", r"line 1: task 'a' names columns 2 and 4"),
        ("model,a,,b\nx,1,2,3\n", r"line 1: column 3 has no task name"),
        ("model,a,b\nx,1,2\ny,3,4\nx,5,6\n", r"line 4: model 'x' already has a row on line 2"),
        ("model,a,b\nx,1,2\n,3,4\n", r"line 3: empty model name"),
        ("model,a,b\nx,1,2\ny,3,zz\n", r"line 3: task 'b': score 'zz' is not a number"),
        ("model,a,b\nx,1,2\ny,3,inf\n", r"line 3: task 'b': score is inf"),
        ("model,a,b\nx,,\ny,,\n", r"every score cell is empty \(empty history\)"),
        ("model,a,b\n", r"no data rows after the header \(empty history\)"),
        ("model\nx\n", r"line 1: a wide history needs a model column and at least one task column"),
    ],
)
def test_wide_form_errors(tmp_path, text, message):
    with pytest.raises(HistoryError, match=r"wide\.csv: " + message):
        read_history(write(tmp_path, text, "wide.csv"), wide=True)


def test_wide_form_single_model_task_warns(tmp_path):
    path = write(tmp_path, "model,a,b\nx,1,2\ny,3,\n", "wide.csv")
    with pytest.warns(HistoryWarning, match=r"task 'b' has a score for only one model"):
        read_history(path, wide=True)
    with pytest.raises(HistoryError, match=r"task 'b' has a score for only one model"):
        read_history(path, wide=True, strict=True)


# -- the History record ------------------------------------------------------


def test_from_matrix_and_back():
    m = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan]])
    h = History.from_matrix(["a", "b"], ["x", "y", "z"], m)
    np.testing.assert_array_equal(h.matrix(), m)
    np.testing.assert_array_equal(h.observed_mask(), ~np.isnan(m))
    assert h.kind is None  # all-finetune is stored as None
    assert History.from_matrix(["a", "b"], ["x", "y", "z"], m, kind="logme").kinds == ("logme",)
    with pytest.raises(ValueError, match=r"matrix: expected shape \(2, 2\)"):
        History.from_matrix(["a", "b"], ["x", "y"], m)
    with pytest.raises(ValueError, match="matrix: contains inf"):
        History.from_matrix(["a"], ["x"], [[np.inf]])


def test_subset_and_drop_tasks_keep_every_model():
    m = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, 6.0]])
    h = History.from_matrix(["a", "b"], ["x", "y", "z"], m)
    sub = h.subset_tasks(["z", "x"])
    assert sub.tasks == ("z", "x") and sub.models == ("a", "b")
    np.testing.assert_array_equal(sub.matrix(), [[3.0, 1.0], [6.0, np.nan]])
    dropped = h.drop_tasks(["z"])
    assert dropped.models == ("a", "b") and dropped.tasks == ("x", "y")
    assert not dropped.observed_mask()[1].any()  # b has no rows left but stays listed
    with pytest.raises(ValueError, match=r"names: unknown name\(s\) 'zz' \(did you mean 'z'\?\)"):
        h.drop_tasks(["zz"])
    with pytest.raises(TypeError, match="single string"):
        h.subset_tasks("x")
    with pytest.raises(ValueError, match="listed twice"):
        h.subset_tasks(["x", "x"])


def test_history_validates_its_fields():
    with pytest.raises(ValueError, match="must be finite"):
        History(("a",), ("t",), [0], [0], [np.nan])
    with pytest.raises(ValueError, match=r"model_index: values must lie in \[0, 1\)"):
        History(("a",), ("t",), [1], [0], [1.0])
    with pytest.raises(ValueError, match="one entry per row"):
        History(("a",), ("t",), [0, 0], [0], [1.0])
    with pytest.raises(ValueError, match=r"\('a', 't', kind 'finetune'\) has more than one row"):
        History(("a",), ("t",), [0, 0], [0, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="models: 'a' is listed twice"):
        History(("a", "a"), ("t",), [0], [0], [1.0])
    with pytest.raises(TypeError, match="model_index"):
        History(("a",), ("t",), [0.0], [0], [1.0])
    h = History(("a",), ("t",), [0, 0], [0, 0], [1.0, 2.0], kind=("finetune", "logme"))
    assert h.kinds == ("finetune", "logme")
    assert h == History(("a",), ("t",), np.array([0, 0]), [0, 0], [1.0, 2.0], kind=["finetune", "logme"])
    assert h != h.select_kind("logme")


# -- writing and reading back --------------------------------------------------


def awkward_history() -> History:
    models = ("org/model,one", 'quote"d', "['Bacterial_spot', 'Healthy']")
    tasks = ("t 1", "t,2")
    return History(
        models,
        tasks,
        [0, 0, 1, 2, 2, 1, 0],
        [0, 1, 0, 1, 0, 1, 0],
        [0.1 + 0.2, 1 / 3, 1e-300, 123456789.123456789, -0.0, 7.0, -2.5],
        kind=("finetune", "finetune", "logme", "finetune", "finetune", "finetune", "logme"),
        source=("paper", "", "", "run,1", "", "", ""),
    )


def test_long_csv_round_trip_is_exact(tmp_path):
    h = awkward_history()
    path = tmp_path / "out.csv"
    h.to_long_csv(path)
    assert read_history(path) == h
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left


def test_wide_csv_round_trip(tmp_path):
    h = awkward_history().select_kind("finetune")
    path = tmp_path / "wide.csv"
    h.to_wide_csv(path)
    back = read_history(path, wide=True)
    assert back.models == h.models and back.tasks == h.tasks
    np.testing.assert_array_equal(back.matrix(), h.matrix())
    with pytest.raises(ValueError, match="mixes kinds"):
        awkward_history().to_wide_csv(path)


# -- side information ----------------------------------------------------------

MODELS = (
    "model,n_params,model_type,accuracy,dataset,\n"
    "a,1000,vit,0.9,imagenet,7\n"
    "b,5000000,vit,N/A,imagenet,8\n"
    "c,25000000,resnet,0.8,,9\n"
    "d,,swin,0.7,hfpics,10\n"
)


def test_model_table_types_columns(tmp_path):
    table = read_model_table(write(tmp_path, MODELS, "models.csv"))
    assert table.keys == ("a", "b", "c", "d")
    assert set(table.numeric) == {"n_params", "accuracy"}  # the unnamed column is ignored
    assert set(table.categorical) == {"model_type", "dataset"}
    assert np.isnan(table.numeric["n_params"][3]) and np.isnan(table.numeric["accuracy"][1])
    assert table.categorical["dataset"] == ("imagenet", "imagenet", "", "hfpics")


def test_side_table_align_reports_missing_names(tmp_path):
    table = read_model_table(write(tmp_path, MODELS, "models.csv"))
    aligned = table.align(["d", "zz", "a"])
    assert aligned.keys == ("d", "zz", "a") and aligned.missing == ("zz",)
    assert np.isnan(aligned.numeric["accuracy"][1]) and aligned.categorical["model_type"] == ("swin", "", "vit")


def test_design_matrix(tmp_path):
    table = read_model_table(write(tmp_path, MODELS, "models.csv"))
    x, columns = table.design_matrix(["a", "b", "c", "d"])
    assert x.dtype == np.float64 and x.shape == (4, len(columns))
    col = {name: x[:, i] for i, name in enumerate(columns)}
    # 1e3 .. 2.5e7 spans more than 3 decades: log1p, then the mean fills the gap.
    logged = np.log1p([1000, 5e6, 25e6])
    np.testing.assert_allclose(col["log1p(n_params)"], [*logged, logged.mean()])
    np.testing.assert_array_equal(col["n_params:missing"], [0, 0, 0, 1])
    np.testing.assert_allclose(col["accuracy"], [0.9, 0.8, 0.8, 0.7])
    np.testing.assert_array_equal(col["model_type=vit"], [1, 1, 0, 0])
    np.testing.assert_array_equal(col["dataset=hfpics"], [0, 0, 0, 1])
    _, few = table.design_matrix(["a", "b", "c", "d"], max_categories=1)
    assert "model_type=vit" in few and "model_type=other" in few and "model_type=swin" not in few
    with pytest.raises(ValueError, match="max_categories"):
        table.design_matrix(["a"], max_categories=0)


def test_design_matrix_drops_constant_and_empty_columns():
    table = SideTable.from_cells(
        ["a", "b", "c"],
        {"same": [1, 1, 1], "empty": [None, None, None], "kind": ["x", "x", "x"], "size": [1.0, 2.0, None]},
    )
    x, columns = table.design_matrix(["a", "b", "c", "new"])
    assert columns == ["same:missing", "size", "size:missing", "kind=x"]
    np.testing.assert_array_equal(x[:, 0], [0, 0, 0, 1])


def test_side_table_errors(tmp_path):
    with pytest.raises(HistoryError, match=r"models\.csv: line 1: no column 'model' \(did you mean 'modle'\?\)"):
        read_model_table(write(tmp_path, "modle,x\na,1\n", "models.csv"))
    with pytest.raises(HistoryError, match=r"models\.csv: line 3: model 'a' already has a row on line 2"):
        read_model_table(write(tmp_path, "model,x\na,1\na,2\n", "models.csv"))
    with pytest.raises(HistoryError, match=r"tasks\.csv: line 2: empty 'task'"):
        read_task_table(write(tmp_path, "task,x\n,1\n", "tasks.csv"))
    with pytest.raises(HistoryError, match=r"tasks\.csv: line 2: 3 fields, but the header has 2"):
        read_task_table(write(tmp_path, "task,x\nt,1,2\n", "tasks.csv"))


# -- distances ---------------------------------------------------------------


def test_distance_matrix_reorders_rows(tmp_path):
    text = ',a,"[\'x\', \'y\']",c\nc,3,2,0\na,0,1,3\n"[\'x\', \'y\']",1,0,2\n'
    names, d = read_distance_matrix(write(tmp_path, text, "dist.csv"))
    assert names == ("a", "['x', 'y']", "c")
    np.testing.assert_array_equal(d, [[0, 1, 3], [1, 0, 2], [3, 2, 0]])


@pytest.mark.parametrize(
    "text, message",
    [
        (",a,b\na,0,1\n", r"not square: 2 names in the header but 1 rows"),
        (",a,b\na,0,1\nc,1,0\n", r"line 3: row 'c' is not in the header"),
        (",a,b\na,0,1\na,1,0\n", r"line 3: row 'a' repeats line 2"),
        (",a,a\na,0,1\na,1,0\n", r"line 1: 'a' names columns 2 and 3"),
        (",a,b\na,0,-1\nb,1,0\n", r"line 2: distance to 'b' is -1; distances must be finite and non-negative"),
        (",a,b\na,0,inf\nb,1,0\n", r"line 2: distance to 'b' is inf"),
        (",a,b\na,0,\nb,1,0\n", r"line 2: distance to 'b' is '', not a number"),
        (",a,b\na,0,1\nb,1\n", r"line 3: 2 fields, but the header has 3"),
    ],
)
def test_distance_matrix_errors(tmp_path, text, message):
    with pytest.raises(HistoryError, match=r"dist\.csv: " + message):
        read_distance_matrix(write(tmp_path, text, "dist.csv"))


def test_distance_matrix_diagonal_warns(tmp_path):
    path = write(tmp_path, ",a,b\na,0,1\nb,1,0.5\n", "dist.csv")
    with pytest.warns(HistoryWarning, match=r"line 3: distance of 'b' to itself is 0\.5"):
        read_distance_matrix(path)


# -- the published benchmarks ------------------------------------------------


@needs_bench
def test_real_sfda_table():
    h = read_history(BENCH / "sfda_supervised_11x11.csv", wide=True)
    assert h.n_models == 11 and h.n_tasks == 11 and len(h) == 121
    assert h.models[0] == "resnet34" and h.tasks[0] == "aircraft"
    assert h.matrix()[0, 0] == 84.06


@needs_bench
def test_real_transfergraph_records():
    h = read_history(
        BENCH / "transfergraph_image" / "records.csv", task_col="finetuned_dataset", score_col="eval_accuracy",
        score_range=(0, 1),
    )
    assert h.n_models == 180 and h.n_tasks == 13 and len(h) == 2254
    usable = h.drop_tasks(["food101"])  # the benchmark's broken column
    assert usable.n_tasks == 12 and usable.n_models == 180


@needs_bench
def test_real_side_information_and_distances():
    root = BENCH / "transfergraph_image"
    records = read_history(root / "records.csv", task_col="finetuned_dataset", score_col="eval_accuracy")
    models = read_model_table(root / "model_config.csv")
    assert "number_of_parameters" in models.numeric and "model_type" in models.categorical
    assert models.align(records.models).missing == ()
    x, columns = models.design_matrix(records.models)
    assert x.shape == (180, len(columns)) and np.all(np.isfinite(x))
    assert "log1p(number_of_parameters)" in columns and "model_type=vit" in columns
    tasks = read_task_table(root / "target_dataset_features.csv", key="finetune_dataset")
    assert set(tasks.numeric) == {"size", "number_of_classes"}
    assert tasks.align(records.tasks).missing == ("food101",)
    names, d = read_distance_matrix(root / "domain_distance_vit_b16.csv")
    assert d.shape == (69, 69) and "['Bacterial_spot', 'Healthy']" in names
    assert set(records.drop_tasks(["food101"]).tasks) <= set(names)
    np.testing.assert_array_equal(np.diag(d), 0)


@needs_bench
def test_real_transferability_scores_has_a_truncated_line():
    # The published file has two cut-off lines; the reader says where, rather than guess.
    path = BENCH / "transfergraph_image" / "transferability_scores.csv"
    with pytest.raises(HistoryError, match=re.escape("transferability_scores.csv: line 1052: 4 fields, but the header has 11")):
        read_history(path, task_col="target_dataset", kind_col="metric")


@pytest.mark.parametrize("text, wide, message", [
    ("model,task,score\na,t,1\nmobilenet_v2\x00,t,2\n", False,
     r"line 3: model id 'mobilenet_v2\\x00' holds the non-printable character U\+0000"),
    ("model,task,score\na,t\x07x,1\n", False, r"line 2: task id 't\\x07x' holds the non-printable"),
    ("model,t\x00,u\nm,1,2\n", True, r"line 1: column 2: task id 't\\x00' holds the non-printable"),
    ("model,t,u\nm\x00,1,2\n", True, r"line 2: model id 'm\\x00' holds the non-printable"),
    ("model,task,score\n" + "x" * 50_000 + ",t,1\n", False, r"line 2: model id 'x+'\.\.\. has 50,000 characters; "
                                                            r"an id is at most 256: shorten it"),
])
def test_readers_refuse_ids_that_are_not_printable_text_naming_the_line(tmp_path, text, wide, message):
    with pytest.raises(HistoryError, match=message):
        read_history(write(tmp_path, text), wide=wide)


def test_side_tables_and_distances_refuse_bad_ids_naming_the_line(tmp_path):
    with pytest.raises(HistoryError, match=r"line 3: model id 'b\\x00' holds the non-printable"):
        read_model_table(write(tmp_path, "model,family\na,vit\nb\x00,cnn\n"))
    with pytest.raises(HistoryError, match=r"line 1: column 3: dataset id 'b\\x00'"):
        read_distance_matrix(write(tmp_path, ",a,b\x00\na,0,1\nb\x00,1,0\n"))
