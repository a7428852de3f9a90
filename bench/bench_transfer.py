"""Fitting the transfer space, and ranking a very large zoo, against their peers.

Fit: 10,000 models x 1,000 tasks at 5% density (500,000 results), with model
metadata and task features, stored in a zoo; ``fennec.fit`` end to end (reading
the history from SQLite, inner cross-validation, writing the fitted arrays)
beside the original Fennec recipe's rank-5 NMF on the same matrix; and
``fit_transfer`` with task distances (20 clusters of tasks), where the model
vectors keep 16 factors of the residuals: checked against the exact neighbour shift.

Rank: 1,000,000 models once the task vector is known. ``Ranker.rank`` end to
end (task vector, fused top-k, metadata of the top k) and the bare core top-k,
beside numpy scoring the same vectors (``V @ t`` then ``argpartition``).
"""

from __future__ import annotations

import numpy as np
import pytest

import fennec
from fennec import kernels
from fennec.evaluate import nmf
from fennec.features import place_task
from fennec.history import History
from fennec.ranking import Ranker

FIT_MODELS, FIT_TASKS, DENSITY = 10_000, 1_000, 0.05
RANK_MODELS, RANK_TASKS = 1_000_000, 12
FAMILIES = ("resnet", "vit", "convnext", "mobilenet", "efficientnet", "swin")


def _synthetic_history(n_models, n_tasks, density, seed):
    """Scores with a low-rank structure that model family and task size partly explain."""
    rng = np.random.default_rng(seed)
    family = rng.integers(0, len(FAMILIES), n_models)
    size = rng.lognormal(17, 1, n_models)
    n_classes = rng.integers(2, 1000, n_tasks)
    n_train = rng.integers(500, 100_000, n_tasks)
    quality = rng.standard_normal(n_models)
    family_effect = rng.standard_normal((len(FAMILIES), 1)) * np.log10(n_classes)[None, :] / 3
    scores = (quality[:, None] + family_effect[family] + 0.1 * np.log(size)[:, None]
              + 0.7 * rng.standard_normal((n_models, n_tasks)))
    measured = rng.random((n_models, n_tasks)) < density
    measured[np.arange(n_models), rng.integers(0, n_tasks, n_models)] = True  # every model has a result
    rows, cols = np.nonzero(measured)
    models = tuple(f"m{i:07d}" for i in range(n_models))
    tasks = tuple(f"t{j:05d}" for j in range(n_tasks))
    history = History(models=models, tasks=tasks, model_index=rows, task_index=cols,
                      scores=60 + 10 * scores[rows, cols])
    model_rows = [{"id": models[i], "family": FAMILIES[family[i]], "n_params": float(size[i])}
                  for i in range(n_models)]
    task_rows = [{"id": tasks[j], "n_classes": int(n_classes[j]), "n_train": int(n_train[j])}
                 for j in range(n_tasks)]
    return history, model_rows, task_rows, scores.mean(1)


@pytest.fixture(scope="module")
def fit_zoo(tmp_path_factory):
    history, model_rows, task_rows, mean_score = _synthetic_history(FIT_MODELS, FIT_TASKS, DENSITY, seed=0)
    zoo = fennec.Zoo.create(tmp_path_factory.mktemp("fit") / "zoo")
    zoo.add_models(model_rows)
    zoo.add_tasks(task_rows)
    zoo.add_history(history)
    return zoo, history, mean_score


@pytest.mark.benchmark(group="fit 10k models x 1k tasks, 5% density")
def test_fennec_fit_10k_x_1k(benchmark, fit_zoo, extra_report):
    zoo, history, mean_score = fit_zoo
    summary = benchmark.pedantic(fennec.fit, args=(zoo,), rounds=2, iterations=1)
    assert summary["n_models"] == FIT_MODELS and summary["n_tasks"] == FIT_TASKS
    state, _ = zoo.read_fitted()
    # The learned prior (from 5% of the results) must follow each model's mean over all tasks.
    prior = np.asarray(state["model_vectors"])[:, 0]
    assert np.corrcoef(prior, mean_score)[0, 1] > 0.9
    extra_report["fit 10k x 1k (500k results): median seconds"] = f"{benchmark.stats.stats.median:.1f}"


@pytest.mark.benchmark(group="fit 10k models x 1k tasks, 5% density")
def test_nmf_rank5_10k_x_1k(benchmark, fit_zoo):
    zoo, history, _ = fit_zoo
    matrix = history.matrix()
    shifted = matrix - np.nanmin(matrix)
    # 100 multiplicative updates (the recipe's evaluation uses 500): the peer is timed generously.
    w, h = benchmark.pedantic(nmf, args=(shifted, 5, 0), kwargs={"iterations": 100}, rounds=1, iterations=1)
    assert w.shape == (FIT_MODELS, 5) and h.shape == (5, FIT_TASKS)


@pytest.mark.benchmark(group="fit 10k models x 1k tasks, 5% density")
def test_fit_transfer_with_task_distances_10k_x_1k(benchmark, extra_report):
    """Neighbour tasks on a large zoo: 20 clusters of tasks (descriptor distances), each with
    its own model order; the fit keeps 16 factors of the residuals instead of 1,000 columns."""
    from fennec.space import fit_transfer, neighbour_weights, normalize_scores
    from fennec.space.transfer import PRIOR_SHRINKAGE

    rng = np.random.default_rng(2)
    cluster = rng.integers(0, 20, FIT_TASKS)
    where = rng.normal(0, 3, (20, 16))[cluster] + rng.normal(0, 0.7, (FIT_TASKS, 16))
    distances = np.sqrt(((where[:, None] - where[None]) ** 2).mean(2))
    quality, effect = rng.normal(0, 1, FIT_MODELS), rng.normal(0, 1, (FIT_MODELS, 20))
    scores = 70 + 3 * quality[:, None] + 3 * effect[:, cluster] + rng.normal(0, 0.5, (FIT_MODELS, FIT_TASKS))
    scores[rng.random(scores.shape) > DENSITY] = np.nan
    known, new = np.arange(FIT_TASKS - 1), FIT_TASKS - 1
    model = benchmark.pedantic(fit_transfer, args=(scores[:, known],),
                               kwargs={"task_distances": distances[np.ix_(known, known)]}, rounds=1, iterations=1)
    assert model.bandwidth is not None and model.model_vectors.shape[1] == 17
    predicted = model.predict(task_distances=distances[new, known])
    normalized = normalize_scores(scores[:, known])
    seen = ~np.isnan(normalized)
    values = np.where(seen, normalized, 0.0)
    prior = values.sum(1) / (seen.sum(1) + PRIOR_SHRINKAGE)
    exact = prior + (values - prior[:, None] * seen) @ neighbour_weights(distances[new, known], model.bandwidth)
    assert np.corrcoef(predicted, exact)[0, 1] > 0.99  # 16 factors carry the neighbour shift
    truth = 3 * quality + 3 * effect[:, cluster[new]]
    gain = np.corrcoef(predicted, truth)[0, 1] - np.corrcoef(prior, truth)[0, 1]
    assert gain > 0
    extra_report["fit_transfer 10k x 1k with task distances: seconds"] = f"{benchmark.stats.stats.median:.1f}"


@pytest.fixture(scope="module")
def rank_zoo(tmp_path_factory):
    """A fitted zoo of a million models: a dozen tasks, each with a tenth of the models measured."""
    history, model_rows, task_rows, _ = _synthetic_history(RANK_MODELS, RANK_TASKS, 0.1, seed=1)
    zoo = fennec.Zoo.create(tmp_path_factory.mktemp("rank") / "zoo")
    zoo.add_models(model_rows)
    zoo.add_tasks(task_rows)
    zoo.add_history(history)
    fennec.fit(zoo)
    ranker = Ranker(zoo)
    task = {"n_classes": 100, "n_train": 5_000}
    ranker.rank(task, k=10)  # load the fitted state once, as a service does
    space = ranker.fitted().space
    vectors = np.ascontiguousarray(space.model_vectors)
    placed = place_task(space, task)
    task_vector = space.task_vector(placed.features, placed.distances)
    return ranker, task, vectors, task_vector


def _numpy_top(vectors, task_vector, k):
    scores = vectors @ task_vector
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@pytest.mark.benchmark(group="rank 1M models, task vector known")
def test_fennec_rank_1m(benchmark, rank_zoo):
    ranker, task, vectors, task_vector = rank_zoo
    ranking = benchmark(ranker.rank, task, k=10)
    want = _numpy_top(vectors, task_vector, 10)
    got_scores = np.sort(vectors[[ranker.fitted().space.row_of[row["model"]] for row in ranking.rows]] @ task_vector)
    np.testing.assert_allclose(got_scores, np.sort(vectors[want] @ task_vector), rtol=1e-4)


@pytest.mark.benchmark(group="rank 1M models, task vector known")
def test_fennec_topk_1m(benchmark, rank_zoo):
    _, _, vectors, task_vector = rank_zoo
    scores, order = benchmark(kernels.topk, vectors, task_vector, 10)
    np.testing.assert_allclose(np.sort(scores), np.sort(vectors[_numpy_top(vectors, task_vector, 10)] @ task_vector),
                               rtol=1e-4)


@pytest.mark.benchmark(group="rank 1M models, task vector known")
def test_numpy_rank_1m(benchmark, rank_zoo):
    _, _, vectors, task_vector = rank_zoo
    top = benchmark(_numpy_top, vectors, task_vector, 10)
    assert len(top) == 10
