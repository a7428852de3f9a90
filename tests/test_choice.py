"""Which models a budget of forward passes runs: fennec's own top, or the largest expected change
to the top of the ranking."""

import dataclasses

import numpy as np
import pytest

import fennec
from fennec.evaluate import EvalData, evaluate
from fennec.history import History
from fennec.space import CHOICE_RULES, Evidence, check_choice, choose_models, fit_space
from fennec.space.choice import expected_changes
from fennec.space.evidence import metric_residual_spread, standardize_tasks


def _space(n_models=8, n_tasks=6, seed=0):
    """A space whose models are predicted in index order, 0 best, with no spread of their own."""
    rng = np.random.default_rng(seed)
    history = 80 - 2.0 * np.arange(n_models)[:, None] + rng.normal(0, 0.3, (n_models, n_tasks))
    models, tasks = [f"m{i}" for i in range(n_models)], [f"t{j}" for j in range(n_tasks)]
    space = fit_space(history, models, tasks)
    return dataclasses.replace(space, spread=np.zeros(n_models))


def _with_evidence(space, residual, weight=0.75, shortlist=None, spread=None):
    return dataclasses.replace(space, evidence=Evidence("logme", weight, None, shortlist, np.asarray(residual)),
                               spread=space.spread if spread is None else np.asarray(spread))


def test_the_change_rule_runs_the_uncertain_model_just_outside_the_top_instead_of_a_certain_one():
    spread = np.zeros(8)
    spread[2] = 3.0  # the third best model's prediction is uncertain, every other one is exact
    space = _with_evidence(_space(), np.zeros(8), spread=spread)
    prediction = space.predict()
    assert list(np.argsort(-prediction)) == list(range(8))
    everyone = np.arange(8)
    assert choose_models(space, prediction, everyone, 2, "top").tolist() == [0, 1]
    # The second best's score is known: its pass is spent on the model that may belong in the top.
    assert choose_models(space, prediction, everyone, 2, "change").tolist() == [0, 2]
    changes = expected_changes(space, prediction, everyone, np.array([0, 1]))
    assert changes[2] > 0 and np.all(np.delete(changes, 2) == 0)
    # The same model under a metric that is mostly error: its crossings would be a loss.
    noisy = _with_evidence(space, np.r_[0.0, 0.0, 20.0, np.zeros(5)], spread=spread)
    assert expected_changes(noisy, prediction, everyone, np.array([0, 1]))[2] < 0
    assert choose_models(noisy, prediction, everyone, 2, "change").tolist() == [0, 1]


def test_an_uncertain_prediction_and_a_precise_metric_are_worth_a_pass():
    rng = np.random.default_rng(4)
    spread = rng.uniform(0.5, 1.0, 8)
    space = _with_evidence(_space(), np.full(8, 0.3), spread=spread)
    prediction = space.predict()
    base = expected_changes(space, prediction, np.arange(8), np.arange(3))
    uncertain = _with_evidence(space, np.full(8, 0.3), spread=np.r_[spread[:5], 3.0, spread[6:]])
    assert expected_changes(uncertain, prediction, np.arange(8), np.arange(3))[5] > base[5]
    erratic = _with_evidence(space, np.r_[np.full(5, 0.3), 3.0, np.full(2, 0.3)], spread=spread)
    assert expected_changes(erratic, prediction, np.arange(8), np.arange(3))[5] < base[5]


def test_the_expected_change_is_the_weighted_gain_at_each_top_boundary():
    rng = np.random.default_rng(1)
    residual, spread = np.zeros(8), np.zeros(8)
    residual[4], spread[4] = 0.8, 1.2
    space = _with_evidence(_space(), residual, weight=0.5, spread=spread)
    prediction = space.predict()
    # The models the fusion would see have no discrepancy: model 4's fused score is its prediction
    # plus weight times its metric's discrepancy (truth minus prediction, plus the metric's error).
    unit = np.sqrt(np.nanmean(np.nanvar(space.normalized, 0)))
    truth = prediction[4] + 1.2 * rng.standard_normal(400_000)
    fused = prediction[4] + 0.5 * (truth - prediction[4] + 0.8 * unit * rng.standard_normal(len(truth)))
    others = np.sort(np.delete(prediction, 4))[::-1]
    expected = 0.0
    for k in range(1, 8):
        threshold = others[k - 1]
        if prediction[4] > threshold:  # inside the top-k: leaving it is right where the truth is below
            gain = np.where(fused < threshold, threshold - truth, 0.0)
        else:
            gain = np.where(fused > threshold, truth - threshold, 0.0)
        expected += gain.mean() / k
    value = expected_changes(space, prediction, np.array([4]), np.array([0, 1, 2]))[0]
    assert value == pytest.approx(expected, rel=0.03, abs=1e-3)


def test_both_rules_respect_the_budget_the_runnable_models_and_the_shortlist():
    rng = np.random.default_rng(2)
    space = _with_evidence(_space(12), rng.uniform(0, 2, 12), spread=rng.uniform(0, 2, 12))
    prediction = space.predict()
    runnable = np.array([1, 3, 4, 7, 8, 10])
    for rule in CHOICE_RULES:
        for budget in range(1, 8):
            chosen = choose_models(space, prediction, runnable, budget, rule)
            assert len(chosen) == min(budget, len(runnable)) and len(set(chosen.tolist())) == len(chosen)
            assert set(chosen.tolist()) <= set(runnable.tolist())
            assert list(chosen) == sorted(chosen, key=lambda i: -prediction[i])  # best predicted first
        assert choose_models(space, prediction, runnable, None, rule).tolist() == sorted(
            runnable.tolist(), key=lambda i: -prediction[i])
    # A fusion of the best 2 run models drops any further one: the change rule runs 2.
    short = _with_evidence(space, rng.uniform(0, 2, 12), shortlist=2)
    assert len(choose_models(short, prediction, runnable, 5, "change")) == 2
    assert len(choose_models(short, prediction, runnable, 5, "top")) == 5
    # Without a fusion nothing is expected to change: both run the top.
    plain = dataclasses.replace(space, evidence=None)
    assert choose_models(plain, prediction, runnable, 3, "change").tolist() == [1, 3, 4]


def test_the_choice_is_checked_in_one_place_and_a_fit_without_residual_spreads_is_refused():
    assert check_choice(None) == "top" and check_choice("change") == "change"
    with pytest.raises(ValueError, match="choose: expected 'top'.*got 'best'"):
        check_choice("best")
    with pytest.raises(TypeError, match="choose"):
        check_choice(1)
    space = dataclasses.replace(_space(), evidence=Evidence("logme", 0.5, None))
    with pytest.raises(ValueError, match="refit the zoo"):
        choose_models(space, space.predict(), np.arange(8), 3, "change")
    with pytest.raises(ValueError, match="choose"):
        choose_models(space, space.predict(), np.arange(8), 3, "bottom")


def _metric_table(seed=0, n_models=12, n_tasks=8):
    """A metric that tracks the truth, noisily for model 0 only."""
    rng = np.random.default_rng(seed)
    truth = 70 + 4 * rng.standard_normal(n_models)[:, None] + 2 * rng.standard_normal((n_models, n_tasks))
    metric = truth + rng.normal(0, 0.5, truth.shape)
    metric[0] += rng.normal(0, 8, n_tasks)
    return truth, {"logme": metric}


def test_a_fit_keeps_each_models_residual_spread_under_the_metric():
    truth, forward = _metric_table()
    spread = metric_residual_spread(standardize_tasks(forward["logme"]), standardize_tasks(truth))
    assert spread[0] > 3 * np.median(spread[1:])
    models, tasks = [f"m{i}" for i in range(12)], [f"t{j}" for j in range(8)]
    space = fit_space(truth, models, tasks, forward_scores=forward, budget=6)
    assert space.evidence is not None and space.evidence.residual_spread is not None
    assert space.evidence.residual_spread[0] == max(space.evidence.residual_spread)
    again = type(space).from_arrays(*space.to_arrays())
    assert again.evidence is not None
    np.testing.assert_allclose(again.evidence.residual_spread, space.evidence.residual_spread)


def test_an_evaluation_on_a_budget_says_which_rule_chose_the_models():
    truth, forward = _metric_table(1)
    data = EvalData(truth, [f"m{i}" for i in range(12)], [f"t{j}" for j in range(8)], forward_scores=forward)
    top = evaluate(data, "lodo", budget=4)
    change = evaluate(data, "lodo", budget=4, choose="change")
    assert top["choose"] == "top" and change["choose"] == "change"
    assert all(e["chosen_by"] == "change" and len(e["models"]) == e["forward_passes"] <= 4
               for e in change["evidence"]["tasks"].values())
    assert top["mean"]["fennec_history"] == change["mean"]["fennec_history"]
    assert evaluate(data, "lodo")["choose"] is None
    with pytest.raises(ValueError, match="give budget too"):
        evaluate(data, "lodo", choose="change")
    with pytest.raises(ValueError, match="choose: expected"):
        evaluate(data, "lodo", budget=4, choose="random")


def test_rank_refuses_a_choice_without_a_budget(tmp_path):
    rng = np.random.default_rng(0)
    models, tasks = [f"m{i}" for i in range(5)], [f"t{j}" for j in range(4)]
    with fennec.Zoo.create(tmp_path / "zoo") as zoo:
        zoo.add_models([{"id": m} for m in models])
        zoo.add_history(History.from_matrix(models, tasks, 70 + rng.normal(0, 3, (5, 4))))
        fennec.fit(zoo)
        with pytest.raises(ValueError, match="give budget too"):
            fennec.rank(zoo, choose="change")
        with pytest.raises(ValueError, match="choose: expected"):
            fennec.rank(zoo, choose="all")
        assert len(fennec.rank(zoo, k=3)) == 3
