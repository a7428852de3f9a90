"""Evaluation protocols and the transfer space, on synthetic tables and the published ones."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

import fennec
from scipy.stats import kendalltau, pearsonr, weightedtau

from fennec.evaluate import METRICS, EvalData, evaluate, load_eval_data, ranking_metrics
from fennec.space import fit_transfer, normalize_scores


def shared_benchmarks() -> Path | None:
    root = Path(os.environ.get("FENNEC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = root / "benchmarks"
    return path if path.is_dir() else None


BENCH = shared_benchmarks()
needs_bench = pytest.mark.skipif(BENCH is None, reason="../shared/benchmarks is not present")


def load_sfda():
    with open(BENCH / "sfda_supervised_11x11.csv") as fh:
        rows = list(csv.reader(fh))
    return EvalData(np.array([[float(x) for x in r[1:]] for r in rows[1:]]),
                    [r[0] for r in rows[1:]], rows[0][1:])


def test_metrics_match_scipy_and_hand_counts():
    rng = np.random.default_rng(0)
    truth = rng.random(15)
    prediction = truth + rng.normal(0, 0.3, 15)
    got = ranking_metrics(prediction, truth)
    assert set(got) == set(METRICS)
    assert got["wtau"] == pytest.approx(weightedtau(prediction, truth)[0])
    assert got["kendall"] == pytest.approx(kendalltau(prediction, truth)[0])
    assert got["pearson"] == pytest.approx(pearsonr(prediction, truth)[0])
    truth = np.array([0.9, 0.5, 0.7, 0.1])
    assert ranking_metrics(np.array([0.0, 1.0, 0.5, 0.2]), truth)["regret"] == pytest.approx(0.4)
    assert ranking_metrics(np.array([0.0, 1.0, 0.5, 0.2]), truth)["top3"] == 0.0
    assert ranking_metrics(np.array([0.3, 1.0, 0.5, 0.2]), truth)["top3"] == 1.0
    assert ranking_metrics(truth, truth)["regret"] == 0.0


def test_missing_truth_is_ignored():
    truth = np.array([0.9, np.nan, 0.7, 0.1])
    got = ranking_metrics(np.array([3.0, 100.0, 2.0, 1.0]), truth)
    assert got["wtau"] == pytest.approx(1.0) and got["regret"] == 0.0


def test_normalization_is_per_task_and_order_preserving():
    scores = np.array([[1.0, 50.0], [2.0, np.nan], [3.0, 10.0]])
    g = normalize_scores(scores, "gauss")
    assert np.isnan(g[1, 1])
    assert np.all(np.diff(g[:, 0]) > 0) and g[0, 1] > g[2, 1]
    np.testing.assert_allclose(g[:, 0], -g[::-1, 0])


def planted(seed=0, n_models=60, n_tasks=14):
    """Scores = model quality + (model size x task size) interaction + noise."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1, n_models)
    size = rng.normal(0, 1, n_models)
    task_size = rng.normal(0, 1, n_tasks)
    scores = quality[:, None] + 1.5 * size[:, None] * task_size[None, :] + rng.normal(0, 0.3, (n_models, n_tasks))
    scores[rng.random(scores.shape) < 0.1] = np.nan
    return EvalData(scores, [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)],
                    model_features=size[:, None], model_types=["a" if s > 0 else "b" for s in size],
                    task_features=task_size[:, None])


def test_side_information_is_learned_when_it_matters():
    data = planted()
    result = evaluate(data, "lodo")
    assert result["mean"]["fennec"]["wtau"] > result["mean"]["prior"]["wtau"] + 0.2
    blind = evaluate(EvalData(data.scores, data.models, data.tasks), "lodo")
    assert blind["mean"]["fennec"]["wtau"] == pytest.approx(blind["mean"]["fennec"]["wtau"])
    assert result["mean"]["fennec"]["wtau"] > blind["mean"]["fennec"]["wtau"] + 0.2


def test_no_side_information_ranks_by_the_prior():
    data = planted()
    model = fit_transfer(data.scores[:, 1:])
    assert model.interaction is None
    prediction = model.predict()
    g = normalize_scores(data.scores[:, 1:], model.normalization)
    # The mean normalised score, shrunk by one pseudo-observation at 0.
    shrunk_prior = np.nansum(g, 1) / (np.sum(~np.isnan(g), 1) + 1)
    np.testing.assert_allclose(prediction, shrunk_prior, rtol=1e-6)


def test_result_contract_and_determinism():
    data = planted(3)
    first = evaluate(data, "kshot", shots=3, probe="random", seed=5)
    again = evaluate(data, "kshot", shots=3, probe="random", seed=5)
    assert first == again
    for method in ("fennec", "prior", "prior_std", "fennec_nmf", "random", "fennec_0shot"):
        assert set(first["mean"][method]) == set(METRICS)
    assert set(first["tasks"]) == set(data.tasks)


def test_cold_model_uses_side_information():
    result = evaluate(planted(1), "cold-model")
    assert result["mean"]["fennec"]["wtau"] > result["mean"]["random"]["wtau"] + 0.2
    assert "type_mean" in result["mean"]


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "loo"}, "protocol must be"),
    ({"protocol": "kshot", "probe": "best"}, "probe must be"),
    ({"protocol": "kshot", "shots": 0}, "shots must be >= 1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(planted(), **kwargs)


def test_too_few_tasks():
    data = planted(n_tasks=2)
    with pytest.raises(ValueError, match="at least 3 tasks"):
        evaluate(data, "lodo")


@needs_bench
def test_sfda_leave_one_task_out_is_not_below_the_prior():
    result = evaluate(load_sfda(), "lodo")
    mean = result["mean"]
    assert mean["prior_std"]["wtau"] == pytest.approx(0.826, abs=0.001)  # the published bar
    assert mean["fennec"]["wtau"] >= mean["prior_std"]["wtau"]
    assert mean["fennec"]["wtau"] >= mean["prior"]["wtau"] - 1e-9


@needs_bench
def test_sfda_top_probe_beats_zero_shot_and_reordered_prior():
    mean = evaluate(load_sfda(), "kshot", shots=3, probe="top")["mean"]
    assert mean["fennec"]["wtau"] > mean["fennec_0shot"]["wtau"]
    assert mean["fennec"]["wtau"] > mean["prior_std"]["wtau"]  # re-ordering the prior's top 3: 0.857


@needs_bench
def test_eval_command_json_contract():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fennec", "eval", "--history",
                          str(BENCH / "sfda_supervised_11x11.csv"), "--wide", "--protocol", "lodo", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for method in ("fennec", "prior", "prior_std", "fennec_nmf", "random"):
        assert set(result["mean"][method]) == set(METRICS)
    assert len(result["tasks"]) == 11
    assert result["mean"]["fennec"]["wtau"] >= 0.826


@needs_bench
def test_transfergraph_cold_model_beats_type_mean():
    tg = BENCH / "transfergraph_image"
    data = load_eval_data(tg / "records.csv", task_col="finetuned_dataset", score_col="eval_accuracy",
                          models_path=tg / "model_config.csv", exclude_tasks=["food101"])
    result = evaluate(data, "cold-model")
    assert result["mean"]["fennec"]["wtau"] > result["mean"]["type_mean"]["wtau"]


def test_zoo_evaluation_uses_every_other_kind_as_a_forward_baseline(tmp_path):
    from fennec.evaluate import load_zoo_eval_data
    from fennec.history import History

    rng = np.random.default_rng(3)
    models = [f"m{i}" for i in range(12)]
    tasks = [f"t{j}" for j in range(5)]
    truth = rng.normal(size=(12, 5))
    logme = truth + rng.normal(0, 0.5, truth.shape)
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": m, "family": "cnn" if i % 3 else "vit"} for i, m in enumerate(models)])
    zoo.add_history(History.from_matrix(models, tasks, truth), kind="linear_probe")
    zoo.add_history(History.from_matrix(models, tasks, logme), kind="logme")
    data = load_zoo_eval_data(zoo)
    assert set(data.forward_scores) == {"logme"} and data.model_types[0] == "vit"
    result = evaluate(data, "lodo")
    for j, task in enumerate(tasks):
        want = ranking_metrics(logme[:, j], truth[:, j])
        assert result["tasks"][task]["logme"]["wtau"] == pytest.approx(want["wtau"])
    with pytest.raises(ValueError, match="no 'finetune' results"):
        load_zoo_eval_data(zoo, kind="finetune")


def _clustered_tasks(seed=0, n_models=14, per_cluster=4, clusters=3):
    """Tasks in clusters (distances small within, large across); each cluster has its own
    model order, which no model side information explains."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(clusters), per_cluster)
    centre = rng.normal(0, 5, (clusters, 6))
    where = centre[cluster] + rng.normal(0, 0.3, (len(cluster), 6))
    distances = np.sqrt(((where[:, None] - where[None]) ** 2).sum(2))
    effect = rng.normal(0, 1, (n_models, clusters))
    scores = 70 + 4 * effect[:, cluster] + rng.normal(0, 0.3, (n_models, len(cluster)))
    return scores, distances, cluster


def test_neighbour_weights_are_scale_free_and_favour_the_nearest():
    from fennec.space import neighbour_weights

    d = np.array([3.0, 1.0, 2.0, 5.0])
    for width in (1.0, 0.3):
        w = neighbour_weights(d, width)
        assert w.sum() == pytest.approx(1.0) and np.argmax(w) == 1 and np.all(np.diff(w[[1, 2, 0, 3]]) < 0)
        np.testing.assert_allclose(neighbour_weights(7.5 * d, width), w)
    assert neighbour_weights(d, 0.1)[1] > 0.99 > neighbour_weights(d, 1.0)[1]
    np.testing.assert_allclose(neighbour_weights(np.zeros(3), 0.5), np.full(3, 1 / 3))
    for bad, message in ((np.array([1.0, np.nan]), "finite"), (np.array([-1.0, 2.0]), "non-negative"),
                         (np.zeros((2, 2)), "one distance per known task")):
        with pytest.raises(ValueError, match=message):
            neighbour_weights(bad, 0.5)


def test_neighbour_tasks_rank_a_new_task_like_its_cluster():
    scores, distances, cluster = _clustered_tasks()
    target = 5
    train = np.array([j for j in range(scores.shape[1]) if j != target])
    model = fit_transfer(scores[:, train], task_distances=distances[np.ix_(train, train)])
    assert model.bandwidth is not None  # chosen by the inner cross-validation
    with_distances = model.predict(task_distances=distances[target, train])
    tau_neighbours = weightedtau(with_distances, scores[:, target])[0]
    tau_prior = weightedtau(model.predict(), scores[:, target])[0]
    assert tau_neighbours > 0.8 and tau_neighbours > tau_prior + 0.3
    # The vector form is the neighbour average itself: prior + residuals weighted by neighbour_weights.
    from fennec.space import neighbour_weights
    from fennec.space.transfer import PRIOR_SHRINKAGE

    normalized = normalize_scores(scores[:, train])
    prior = normalized.sum(1) / (normalized.shape[1] + PRIOR_SHRINKAGE)
    weights = neighbour_weights(distances[target, train], model.bandwidth)
    np.testing.assert_allclose(with_distances, prior + (normalized - prior[:, None]) @ weights, atol=1e-5)
    # Without distances to the known tasks a new task has no neighbours: the prior.
    np.testing.assert_allclose(model.predict(), prior, atol=1e-6)
    with pytest.raises(ValueError, match="one per known task"):
        model.predict(task_distances=distances[target, train][:-1])
    with pytest.raises(ValueError, match="shape"):
        fit_transfer(scores[:, train], task_distances=distances[:3, :3])
    # Folding in with the choices kept reuses the width.
    again = fit_transfer(scores[:, train], task_distances=distances[np.ix_(train, train)],
                         choices={"ridge": None, "sharpness": 0.0, "bandwidth": model.bandwidth})
    np.testing.assert_allclose(again.model_vectors, model.model_vectors)


def test_neighbour_factors_are_truncated_on_zoos_with_many_tasks():
    from fennec.space.transfer import MAX_NEIGHBOUR_RANK

    scores, distances, cluster = _clustered_tasks(seed=1, per_cluster=8, clusters=3)  # 24 tasks
    model = fit_transfer(scores, task_distances=distances)
    assert model.bandwidth is not None
    assert model.model_vectors.shape[1] == 1 + MAX_NEIGHBOUR_RANK
    # Three clusters: three factors carry nearly all of the residuals, so the truncated
    # vectors give nearly the exact neighbour average.
    d = distances[0]
    exact_model = fit_transfer(scores, task_distances=distances, choices={"bandwidth": model.bandwidth})
    from fennec.space import neighbour_weights

    normalized = normalize_scores(scores)
    prior = exact_model.model_vectors[:, 0].astype(float)
    exact = prior + (normalized - prior[:, None]) @ neighbour_weights(d, model.bandwidth)
    assert np.corrcoef(model.predict(task_distances=d), exact)[0, 1] > 0.99


def test_lodo_with_task_distances_beats_the_prior_on_clustered_tasks():
    scores, distances, _ = _clustered_tasks(seed=2)
    data = EvalData(scores, [f"m{i}" for i in range(len(scores))], [f"t{j}" for j in range(scores.shape[1])],
                    task_distances=distances)
    mean = evaluate(data, "lodo")["mean"]
    assert mean["fennec"]["wtau"] > mean["prior"]["wtau"] + 0.2
    data.task_distances = None  # the gain is the neighbours': without distances it is gone
    assert evaluate(data, "lodo")["mean"]["fennec"]["wtau"] < mean["fennec"]["wtau"] - 0.2


def test_paired_differences_by_hand():
    from fennec.evaluate import paired_differences

    per_task = {
        "a": {"fennec": {"wtau": 0.5}, "prior": {"wtau": 0.2}, "logme": {"wtau": 0.9}},
        "b": {"fennec": {"wtau": 0.4}, "prior": {"wtau": 0.4}, "logme": {"wtau": float("nan")}},
        "c": {"fennec": {"wtau": 0.9}, "prior": {"wtau": 0.3}, "logme": {"wtau": 0.1}},
        "d": {"fennec": {"wtau": 0.1}, "prior": {"wtau": 0.2}},
    }
    out = paired_differences(per_task)
    gaps = np.array([0.3, 0.0, 0.6, -0.1])
    assert out["prior"]["diff"] == pytest.approx(gaps.mean())
    assert out["prior"]["se"] == pytest.approx(gaps.std(ddof=1) / 2.0)
    assert (out["prior"]["n"], out["prior"]["wins"], out["prior"]["losses"]) == (4, 2, 1)
    # logme: task b undefined, task d unranked -> two tasks, one won, one lost
    assert out["logme"]["n"] == 2 and out["logme"]["diff"] == pytest.approx((-0.4 + 0.8) / 2)
    assert (out["logme"]["wins"], out["logme"]["losses"]) == (1, 1)
    assert set(out) == {"prior", "logme"}


def test_pooled_zoos_weigh_every_task_alike():
    from fennec.evaluate import pool_results

    small, large = evaluate(planted(1, n_tasks=4), "lodo"), evaluate(planted(2, n_tasks=9), "lodo")
    pooled = pool_results({"small": small, "large": large})
    assert pooled["n_tasks"] == 13 and set(pooled["zoos"]) == {"small", "large"}
    assert {t.split("/")[0] for t in pooled["tasks"]} == {"small", "large"}
    for method in ("fennec", "prior"):
        want = (4 * small["mean"][method]["wtau"] + 9 * large["mean"][method]["wtau"]) / 13
        assert pooled["mean"][method]["wtau"] == pytest.approx(want)
    assert pooled["paired"]["prior"]["n"] == 13
    assert pooled["zoos"]["small"]["mean"] == small["mean"]
    with pytest.raises(ValueError, match="differ in protocol"):
        pool_results({"small": small, "kshot": evaluate(planted(1, n_tasks=4), "kshot")})
    with pytest.raises(ValueError, match="no results"):
        pool_results({})


def test_related_tasks_from_dataset_and_classes():
    from fennec.evaluate import related_tasks

    rows = [{"id": "whole", "extra": {"dataset": "mnist"}},
            {"id": "low", "extra": {"dataset": "mnist", "classes": "zero, one,two"}},
            {"id": "high", "dataset": "mnist", "classes": "seven,eight"},
            {"id": "two_seven", "extra": {"dataset": "mnist", "classes": "two,seven"}},
            {"id": "other", "extra": {"dataset": "fashion", "classes": "two"}},
            {"id": "bare"}, {"id": "bare2"}]
    want = np.array([[1, 1, 1, 1, 0, 0, 0],
                     [1, 1, 0, 1, 0, 0, 0],
                     [1, 0, 1, 1, 0, 0, 0],
                     [1, 1, 1, 1, 0, 0, 0],
                     [0, 0, 0, 0, 1, 0, 0],
                     [0, 0, 0, 0, 0, 1, 0],
                     [0, 0, 0, 0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(related_tasks(rows), want)
    assert related_tasks([{"id": "bare"}, {"id": "bare2", "extra": {"classes": "a"}}]) is None


def test_exclude_related_holds_the_related_tasks_out_of_the_fit():
    data = planted(4, n_tasks=8)
    data.scores[:, 1] = data.scores[:, 0] + 0.01  # task 1 is a near copy of task 0
    data.related = np.eye(8, dtype=bool)
    assert evaluate(data, "lodo", exclude_related=True)["tasks"] == evaluate(data, "lodo")["tasks"]
    data.related[0, 1] = data.related[1, 0] = True
    held = evaluate(data, "lodo", exclude_related=True)
    assert held["exclude_related"] is True
    keep = [j for j in range(8) if j != 1]
    without_copy = EvalData(data.scores[:, keep], data.models, [data.tasks[j] for j in keep],
                            model_features=data.model_features, task_features=data.task_features[keep])
    assert held["tasks"]["t0"]["fennec"] == evaluate(without_copy, "lodo")["tasks"]["t0"]["fennec"]
    assert held["tasks"]["t2"]["fennec"] == evaluate(data, "lodo")["tasks"]["t2"]["fennec"]


def test_exclude_related_bad_input():
    data = planted(4, n_tasks=4)
    with pytest.raises(ValueError, match="needs which tasks are related"):
        evaluate(data, "lodo", exclude_related=True)
    data.related = np.ones((4, 4), dtype=bool)
    with pytest.raises(ValueError, match="cold-model protocol holds models out"):
        evaluate(data, "cold-model", exclude_related=True)
    with pytest.raises(ValueError, match="task 't0': fewer than 2 tasks are left"):
        evaluate(data, "kshot", exclude_related=True)
