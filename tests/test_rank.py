"""fennec.fit and fennec.rank on a zoo built from a history table."""

from __future__ import annotations

import numpy as np
import pytest

import fennec
from fennec.history import History


def build_zoo(path, seed=0, n_models=30, n_tasks=8):
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1, n_models)
    size = rng.uniform(1e6, 1e8, n_models)
    task_size = 10 ** rng.uniform(3, 5, n_tasks)
    effect = np.log10(size)[:, None] - 7.0
    scores = 70 + 5 * quality[:, None] + 4 * effect * (np.log10(task_size)[None, :] - 4) + rng.normal(0, 0.5, (n_models, n_tasks))
    models = [f"model{i:02d}" for i in range(n_models)]
    tasks = [f"task{j}" for j in range(n_tasks)]
    zoo = fennec.Zoo.create(path)
    zoo.add_models([{"id": m, "family": "cnn" if i % 2 else "vit", "n_params": float(size[i])}
                    for i, m in enumerate(models)])
    zoo.add_tasks([{"id": t, "n_classes": 10, "n_train": int(task_size[j])} for j, t in enumerate(tasks)])
    zoo.add_history(History.from_matrix(models, tasks, scores))
    return zoo, scores, models


def test_rank_without_task_information_uses_the_prior(tmp_path):
    zoo, scores, models = build_zoo(tmp_path / "zoo")
    fennec.fit(zoo)
    ranking = fennec.rank(zoo, k=5)
    assert "prior" in ranking.basis
    assert [r["rank"] for r in ranking.rows] == [1, 2, 3, 4, 5]
    assert ranking.rows[0]["model"] == models[int(np.argmax(scores.mean(1)))]
    assert {"family", "n_params", "score", "uncertainty"} <= set(ranking.rows[0])
    assert 50 < ranking.rows[0]["score"] < 100  # on the history's scale


def test_rank_with_task_features_follows_the_interaction(tmp_path):
    zoo, scores, models = build_zoo(tmp_path / "zoo")
    summary = fennec.fit(zoo)
    assert summary["task_columns"] == ["n_classes", "n_train"] or summary["task_columns"] == ["n_train"]
    big = fennec.rank(zoo, {"n_classes": 10, "n_train": 1e6}, k=30)
    small = fennec.rank(zoo, {"n_classes": 10, "n_train": 100}, k=30)
    assert big.basis == "task features"
    big_order = [r["model"] for r in big.rows]
    small_order = [r["model"] for r in small.rows]
    assert big_order != small_order


def test_where_filters_and_observed_scores(tmp_path):
    zoo, scores, models = build_zoo(tmp_path / "zoo")
    fennec.fit(zoo)
    only_cnn = fennec.rank(zoo, k=50, where={"family": "cnn"})
    assert len(only_cnn) == 15 and all(r["family"] == "cnn" for r in only_cnn.rows)
    small = fennec.rank(zoo, k=50, where={"n_params": ("<=", 3e7)})
    assert all(r["n_params"] <= 3e7 for r in small.rows)
    prior = fennec.rank(zoo, k=3)
    worst_first = {prior.rows[0]["model"]: 10.0, prior.rows[1]["model"]: 20.0}
    updated = fennec.rank(zoo, k=len(models), observed=worst_first)
    assert "observed" in updated.basis
    names = [r["model"] for r in updated.rows]
    # Measured far below their predictions: they fall, in measured order, shown as measured.
    assert names[-1] == prior.rows[0]["model"]
    assert names.index(prior.rows[1]["model"]) > len(models) // 2
    shown = {r["model"]: r["score"] for r in updated.rows}
    assert [shown[m] for m in worst_first] == pytest.approx([10.0, 20.0])


def test_refit_is_picked_up_and_errors_are_clear(tmp_path):
    zoo, _, _ = build_zoo(tmp_path / "zoo")
    with pytest.raises(fennec.ZooError, match="not fitted"):
        fennec.rank(zoo)
    first = fennec.fit(zoo)["version"]
    fennec.rank(zoo)
    second = fennec.fit(zoo, seed=1)["version"]
    assert second > first
    assert zoo.fitted_version() == second
    with pytest.raises(ValueError, match="unknown metadata field 'colour'"):
        fennec.rank(zoo, where={"colour": "red"})
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        fennec.rank(zoo, observed={"nope": 1.0})
    with pytest.raises(ValueError, match="missing feature"):
        fennec.rank(zoo, {"n_classes": 10})
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        fennec.rank(zoo, k=0)


def test_fit_needs_history(tmp_path):
    zoo = fennec.Zoo.create(tmp_path / "empty")
    with pytest.raises(fennec.ZooError, match="no 'finetune' history"):
        fennec.fit(zoo)


def test_fold_in_keeps_the_choices_and_skips_cross_validation(tmp_path, monkeypatch):
    from fennec.space import transfer

    zoo, scores, models = build_zoo(tmp_path / "zoo", n_models=30, n_tasks=8)
    first = fennec.fit(zoo)
    assert first["refit"] == "full"
    _, meta = zoo.read_fitted()
    # A new task's results, and a new model known only by its metadata.
    rng = np.random.default_rng(5)
    new_scores = scores.mean(1) + rng.normal(0, 0.5, len(models))
    zoo.add_tasks([{"id": "task_new", "n_classes": 10, "n_train": 3000}])
    zoo.add_history(History.from_matrix(models, ["task_new"], new_scores[:, None]))
    zoo.add_models([{"id": "model_new", "family": "vit", "n_params": 5e7}])

    def no_cross_validation(*args, **kwargs):
        raise AssertionError("fold-in ran an inner cross-validation")

    monkeypatch.setattr(transfer, "_weighted_tau", no_cross_validation)
    summary = fennec.fit(zoo, fold_in=True)
    assert summary["refit"] == "fold-in"
    assert summary["n_tasks"] == 9 and summary["n_models"] == 31
    state, folded = zoo.read_fitted()
    assert (folded["ridge"], folded["sharpness"], folded["cold_ridge"]) == \
        (meta["ridge"], meta["sharpness"], meta["cold_ridge"])
    monkeypatch.undo()
    # Same vectors as a fit of the whole history with those choices fixed.
    history = zoo.history()
    design, _ = zoo.model_table().design_matrix(history.models)
    task_rows = {t["id"]: t for t in zoo.tasks()}
    task_x = np.log10([[task_rows[t]["n_classes"], task_rows[t]["n_train"]] for t in history.tasks])
    direct = transfer.fit_transfer(history.matrix(), design, task_x,
                                   choices={"ridge": meta["ridge"], "sharpness": meta["sharpness"],
                                            "normalization": meta["normalization"]})
    ids = [str(m) for m in state["model_ids"]]
    known = [ids.index(m) for m in models]
    np.testing.assert_allclose(np.asarray(state["model_vectors"])[known], direct.model_vectors[known], rtol=1e-5,
                               atol=1e-6)
    # The new model is ranked from its side information.
    assert "model_new" in [r["model"] for r in fennec.rank(zoo, k=31).rows]


def test_fold_in_without_an_earlier_fit_is_a_full_fit(tmp_path):
    zoo, _, _ = build_zoo(tmp_path / "zoo")
    assert fennec.fit(zoo, fold_in=True)["refit"].startswith("full (no earlier fit")
    zoo.add_models([{"id": "model_new", "family": "mlp", "n_params": 5e7}])  # a new family: a new column
    assert "columns changed" in fennec.fit(zoo, fold_in=True)["refit"]


def test_model_embeddings_are_stored_checked_and_used_as_side_information(tmp_path):
    zoo, _, models = build_zoo(tmp_path / "zoo")
    rng = np.random.default_rng(4)
    vectors = {m: rng.normal(size=16) for m in models}
    zoo.set_model_embeddings(vectors)
    stored = zoo.model_embeddings()
    assert list(stored) == models
    np.testing.assert_array_equal(stored[models[3]], vectors[models[3]].astype(np.float32))
    with pytest.raises(ValueError, match="width"):
        zoo.set_model_embeddings({models[0]: np.ones(8)})
    with pytest.raises(fennec.ZooError, match="unknown model"):
        zoo.set_model_embeddings({"nope": np.ones(16)})
    with pytest.raises(ValueError, match="NaN"):
        zoo.set_model_embeddings({models[0]: np.full(16, np.nan)})
    assert zoo.model_embeddings()[models[0]].shape == (16,)  # nothing changed by the refused writes
    from fennec.features import model_side_information
    _, columns = model_side_information(zoo, models)
    assert [c for c in columns if c.startswith("archi2vec")] == ["archi2vec_0", "archi2vec_1", "archi2vec_2"]
    _, without = model_side_information(zoo, models, embeddings=False)
    assert not any(c.startswith("archi2vec") for c in without)


def test_a_fitted_space_round_trips_through_its_arrays():
    """What fennec.fit stores is what fennec.rank reads: the space rebuilt from its arrays and
    choices gives the same task vector and the same predictions, observations included."""
    from fennec.features import place_task
    from fennec.space import TransferSpace, fit_space

    rng = np.random.default_rng(11)
    scores = 70 + rng.normal(0, 3, (12, 1)) + rng.normal(0, 1, (12, 6))
    scores[0, :] = np.nan  # a model with no history: placed from its side information
    descriptors = rng.normal(0, 1, (6, 5))
    sizes = np.log10(rng.integers(100, 5000, (6, 1)).astype(float))
    space = fit_space(scores, [f"m{i}" for i in range(12)], [f"t{j}" for j in range(6)],
                      model_features=rng.normal(0, 1, (12, 2)), model_columns=["a", "b"], task_features=sizes,
                      task_columns=["n_train"], task_descriptors=descriptors)
    state, meta = space.to_arrays()
    again = TransferSpace.from_arrays(state, meta)
    assert again.models == space.models and again.task_columns == space.task_columns
    task = {"n_train": 700, "descriptor": rng.normal(0, 1, 5)}
    placed, placed_again = place_task(space, task), place_task(again, task)
    np.testing.assert_array_equal(space.task_vector(placed.features, placed.distances),
                                  again.task_vector(placed_again.features, placed_again.distances))
    observed = (np.array([2, 5]), np.array([75.0, 60.0]))
    np.testing.assert_allclose(again.predict(placed_again.features, placed_again.distances, observed=observed),
                               space.predict(placed.features, placed.distances, observed=observed), atol=1e-5)
    assert np.isfinite(space.model_vectors[0]).all() and space.model_vectors[0, 0] != 0.0


def linear_probe_zoo(path):
    """A zoo whose truth is linear_probe, with a forward-pass metric beside it (as the demo zoo)."""
    zoo, scores, models = build_zoo(path, n_models=12, n_tasks=6)
    history = zoo.history()
    zoo._con.execute("UPDATE history SET kind = 'linear_probe'")
    zoo.add_history(History.from_matrix(history.models, history.tasks, history.matrix() / 100), kind="logme")
    return zoo, models


def test_a_few_results_of_the_default_kind_do_not_replace_the_history(tmp_path):
    zoo, models = linear_probe_zoo(tmp_path / "zoo")
    zoo.add_history(History.from_rows([(models[0], "extra1", 91.0), (models[1], "extra2", 91.0)]))  # finetune
    with pytest.raises(fennec.ZooError, match=r"ambiguous: the default kind 'finetune' has 2 result\(s\) on 2 "
                                              r"task\(s\), but the zoo holds 'linear_probe' 72 result\(s\) on 6 "
                                              r"task\(s\).*--kind linear_probe") as refused:
        fennec.fit(zoo)
    assert "'logme' 72 result(s) on 6 task(s)" in str(refused.value)
    assert zoo.fitted_version() is None
    summary = fennec.fit(zoo, kind="linear_probe")
    assert (summary["kind"], summary["results"], summary["n_tasks"]) == ("linear_probe", 72, 6)
    # A refit keeps the fitted kind while no other kind outweighs it.
    assert fennec.fit(zoo)["kind"] == "linear_probe"
    # Asked for explicitly, the small kind is fitted as asked.
    summary = fennec.fit(zoo, kind="finetune")
    assert (summary["kind"], summary["results"]) == ("finetune", 2)
    # ... and a later default refit of it is refused, since linear_probe outweighs it.
    with pytest.raises(fennec.ZooError, match="--kind linear_probe"):
        fennec.fit(zoo)
    with pytest.raises(fennec.ZooError, match=r"no 'top1' history to fit \(it holds 'linear_probe' 72"):
        fennec.fit(zoo, kind="top1")


def test_the_default_fit_kind_ties_and_single_kinds(tmp_path):
    zoo, _ = linear_probe_zoo(tmp_path / "zoo")
    # Tied with logme, linear_probe is preferred and not ambiguous.
    assert fennec.fitting.default_fit_kind(zoo) == "linear_probe"
    zoo._con.execute("UPDATE history SET kind = 'top1' WHERE kind = 'linear_probe'")
    with pytest.raises(fennec.ZooError, match="none of them finetune or linear_probe; name one: --kind KIND"):
        fennec.fit(zoo)
    zoo._con.execute("DELETE FROM history WHERE kind = 'logme'")
    assert fennec.fit(zoo)["kind"] == "top1"  # the zoo's only kind


def test_the_kind_of_new_results(tmp_path):
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    assert zoo.kind_of_new_results() == "finetune"
    zoo.close()
    zoo, _ = linear_probe_zoo(tmp_path / "lp")
    with pytest.raises(fennec.ZooError, match=r"several kinds of result \(linear_probe \(72 results\), logme "
                                              r"\(72 results\)\) and no fit to follow; .*--kind KIND"):
        zoo.kind_of_new_results()
    zoo._con.execute("DELETE FROM history WHERE kind = 'logme'")
    assert zoo.kind_of_new_results() == "linear_probe"
    zoo.add_history(History.from_rows([("model00", "task0", 1.0)]), kind="logme")
    fennec.fit(zoo, kind="linear_probe")
    assert zoo.kind_of_new_results() == "linear_probe"  # the fit's kind


def test_a_task_feature_far_outside_the_zoos_tasks_is_clamped_and_said(tmp_path):
    zoo, scores, models = build_zoo(tmp_path / "zoo")
    fennec.fit(zoo)
    ranker = fennec.Ranker(zoo)
    space = ranker.fitted().space
    known = np.asarray(space.task_features)[:, space.task_columns.index("n_train")]  # log10, as fitted
    edge = 10 ** (known.max() + (known.max() - known.min()))  # the span once more past the largest task's
    inside = ranker.rank({"n_classes": 10, "n_train": edge / 2}, k=30)
    assert inside.notes == []  # a task a little beyond the known ones extrapolates as fitted
    huge = ranker.rank({"n_classes": 10, "n_train": 1e308}, k=30)
    assert any("n_train=1e+308 is far outside the zoo's tasks" in n and "ranked as n_train=" in n
               for n in huge.notes), huge.notes
    at_edge = ranker.rank({"n_classes": 10, "n_train": edge}, k=30)
    assert [r["model"] for r in huge.rows] == [r["model"] for r in at_edge.rows]
    np.testing.assert_allclose([r["score"] for r in huge.rows], [r["score"] for r in at_edge.rows])
    # The scores stay on the history's scale (unclamped, 1e308 predicted hundreds of points above it).
    spread = scores.max() - scores.min()
    assert all(scores.min() - spread < r["score"] < scores.max() + spread for r in huge.rows)
    tiny = ranker.rank({"n_classes": 10, "n_train": 1e-300}, k=5)
    assert any("n_train=1e-300 is far outside" in n for n in tiny.notes)
    assert "far outside" in str(huge)  # the command line prints the notes


@pytest.mark.parametrize("value", [True, "5000", None, float("inf"), float("nan"), 0, -5])
def test_a_task_feature_must_be_a_positive_number(tmp_path, value):
    zoo, _, _ = build_zoo(tmp_path / "zoo")
    fennec.fit(zoo)
    with pytest.raises(ValueError, match="task: n_train must be a positive number"):
        fennec.Ranker(zoo).rank({"n_classes": 10, "n_train": value})


def test_observed_ids_are_checked_as_every_id_is(tmp_path):
    zoo, _, models = build_zoo(tmp_path / "zoo")
    fennec.fit(zoo)
    ranker = fennec.Ranker(zoo)
    with pytest.raises(ValueError, match=r"observed: model id 'model00\\x00' holds the non-printable"):
        ranker.rank(observed={"model00\x00": 70.0})
    with pytest.raises(ValueError, match=r"observed: model id 'x+'\.\.\. has 50,000 characters"):
        ranker.rank(observed={"x" * 50_000: 70.0})
    with pytest.raises(TypeError, match="observed: model id must be text"):
        ranker.rank(observed={7: 70.0})


def _described_zoo(path):
    """Tasks with a size, a class count and a proxy descriptor; bigger models gain on bigger tasks."""
    rng = np.random.default_rng(3)
    models, tasks = [f"m{i}" for i in range(12)], [f"t{j}" for j in range(10)]
    size = rng.uniform(2, 5, len(tasks))  # log10 of n_train
    big = np.linspace(0, 1, len(models))
    scores = 70 + 10 * np.outer(big, size - size.mean()) + rng.normal(0, 0.5, (len(models), len(tasks)))
    zoo = fennec.Zoo.create(path)
    zoo.add_models([{"id": m, "n_params": 1e6 * (1 + 10 * b), "family": "a" if i % 2 else "b"}
                    for i, (m, b) in enumerate(zip(models, big))])
    zoo.add_tasks([{"id": t, "n_classes": int(rng.integers(2, 50)), "n_train": int(10 ** s)}
                   for t, s in zip(tasks, size)])
    zoo.add_history(History.from_matrix(models, tasks, scores))
    for t, d in zip(tasks, rng.normal(0, 1, (len(tasks), 6)) + size[:, None]):
        zoo.set_task_descriptor(t, d)
    return zoo


def test_a_task_without_its_descriptor_is_ranked_by_what_is_given_and_says_so(tmp_path):
    from click.testing import CliRunner

    from fennec.cli import cli

    zoo = _described_zoo(tmp_path / "zoo")
    summary = fennec.fit(zoo)
    assert summary["ridge"] is not None and "descriptor_0" in summary["task_columns"]
    small = fennec.rank(zoo, {"n_classes": 10, "n_train": 100}, k=12)
    large = fennec.rank(zoo, {"n_classes": 10, "n_train": 100_000}, k=12)
    assert "no descriptor" in small.basis
    assert small.notes and small.notes[0].startswith("no descriptor given: placed by n_classes, n_train only")
    # the task's size is used: small tasks favour the small models, large ones the large
    assert small.rows[0]["model"] == "m0" and large.rows[0]["model"] == "m11"
    # the same as placing the task with its descriptor coordinates at the known tasks' mean
    space = fennec.Ranker(zoo).fitted().space
    features = np.concatenate([np.log10([10.0, 100.0]), space.task_mean[2:]])
    expected = space.predict(features, None)
    order = [space.models[i] for i in np.argsort(-expected, kind="stable")]
    assert [r["model"] for r in small.rows] == order
    with pytest.raises(ValueError, match=r"missing feature\(s\) \['n_train', 'descriptor'\]"):
        fennec.rank(zoo, {"n_classes": 10})
    result = CliRunner().invoke(cli, ["rank", "--zoo", str(tmp_path / "zoo"), "--task", "n_classes=3",
                                      "--task", "n_train=90"])
    assert result.exit_code == 0, result.output
    assert "no descriptor" in result.stdout and "note" not in result.stdout
    assert "fennec: note: no descriptor given" in result.stderr and "--images DIR or --descriptor FILE" in result.stderr
