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
    updated = fennec.rank(zoo, k=3, observed=worst_first)
    assert "observed" in updated.basis
    names = [r["model"] for r in updated.rows]
    assert names.index(prior.rows[1]["model"]) < names.index(prior.rows[0]["model"])


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
                                   choices={"ridge": meta["ridge"], "sharpness": meta["sharpness"]})
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
