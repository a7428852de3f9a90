"""Task coordinates from distances and proxy descriptors, and ranking a task by its descriptor."""

from __future__ import annotations

import numpy as np
import pytest

import fennec
from fennec.history import History
from fennec.space import DescriptorEncoder, DistanceEmbedding


def test_classical_scaling_recovers_planar_points_and_places_known_ones_back():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 2))
    distance = np.linalg.norm(points[:, None] - points[None], axis=2)
    embedding = DistanceEmbedding.fit(distance, dims=2)
    got = np.linalg.norm(embedding.coordinates[:, None] - embedding.coordinates[None], axis=2)
    np.testing.assert_allclose(got, distance, atol=1e-9)
    # A known task placed from its own distances lands on its own coordinates.
    np.testing.assert_allclose(embedding.place(distance[3]), embedding.coordinates[3], atol=1e-9)
    # A new point keeps its distances to the known ones (exact for points in the same plane).
    new = rng.normal(size=2)
    placed = embedding.place(np.linalg.norm(points - new, axis=1))
    np.testing.assert_allclose(np.linalg.norm(embedding.coordinates - placed, axis=1),
                               np.linalg.norm(points - new, axis=1), atol=1e-9)


@pytest.mark.parametrize("bad, message", [
    (np.ones((2, 3)), "square"), (np.array([[0.0, -1.0], [-1.0, 0.0]]), "non-negative"),
    (np.array([[0.0, np.nan], [np.nan, 0.0]]), "finite"),
])
def test_distance_embedding_rejects_bad_matrices(bad, message):
    with pytest.raises(ValueError, match=message):
        DistanceEmbedding.fit(bad)


def test_descriptor_encoder_round_trips_through_state_and_checks_width():
    rng = np.random.default_rng(1)
    descriptors = rng.normal(size=(6, 5))
    encoder = DescriptorEncoder.fit(descriptors)
    again = DescriptorEncoder.from_state(encoder.to_state("x_"), "x_")
    np.testing.assert_allclose(again.transform(descriptors[2]), encoder.coordinates[2], atol=1e-9)
    with pytest.raises(ValueError, match="expected 5 values"):
        encoder.transform(np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        encoder.transform(np.full(5, np.nan))


def test_rank_by_descriptor_follows_what_the_descriptor_predicts(tmp_path):
    """Two kinds of task (descriptors apart): cnn models win one kind, vit models the other."""
    rng = np.random.default_rng(2)
    n_models, n_tasks = 24, 10
    models = [f"m{i}" for i in range(n_models)]
    tasks = [f"t{j}" for j in range(n_tasks)]
    family = np.array(["cnn" if i % 2 else "vit" for i in range(n_models)])
    kind = np.array([j % 2 for j in range(n_tasks)])  # 1: a task where cnn wins
    descriptor = rng.normal(0, 0.3, (n_tasks, 8)) + np.where(kind[:, None] == 1, 2.0, -2.0)
    advantage = np.where(family[:, None] == "cnn", 1.0, -1.0) * np.where(kind[None, :] == 1, 1.0, -1.0)
    scores = 70 + 3 * advantage + rng.normal(0, 0.5, (n_models, n_tasks))
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    zoo.add_models([{"id": m, "family": f} for m, f in zip(models, family)])
    zoo.add_tasks([{"id": t} for t in tasks])
    zoo.add_history(History.from_matrix(models, tasks, scores))
    for t, d in zip(tasks, descriptor):
        zoo.set_task_descriptor(t, d)
    summary = fennec.fit(zoo)
    assert summary["task_columns"] == ["descriptor_0", "descriptor_1"] and summary["ridge"] is not None
    cnn_task = rng.normal(0, 0.3, 8) + 2.0
    vit_task = rng.normal(0, 0.3, 8) - 2.0
    top_cnn = fennec.rank(zoo, {"descriptor": cnn_task}, k=6).rows
    top_vit = fennec.rank(zoo, {"descriptor": vit_task}, k=6).rows
    assert all(r["family"] == "cnn" for r in top_cnn)
    assert all(r["family"] == "vit" for r in top_vit)
    # A feature the zoo was not fitted with is refused (the service refuses it alike), naming what it takes.
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['n_classes'\].* and a 'descriptor'"):
        fennec.rank(zoo, {"n_classes": 10})
    with pytest.raises(ValueError, match="8 values"):
        fennec.rank(zoo, {"descriptor": np.ones(3)})


def test_rank_by_descriptor_uses_the_neighbour_tasks(clustered_zoo):
    """Clusters of tasks, each with its own model order that no metadata explains: a new
    task's descriptor finds its cluster and the ranking follows that cluster's order."""
    rng = np.random.default_rng(4)
    clusters = 3
    zoo, models, centre, effect = clustered_zoo(rng, n_models=16, clusters=clusters, per_cluster=4, dims=10)
    fennec.fit(zoo)
    _, meta = zoo.read_fitted()
    assert meta["bandwidth"] is not None
    for c in range(clusters):
        ranking = fennec.rank(zoo, {"descriptor": centre[c] + rng.normal(0, 0.3, 10)}, k=3)
        assert ranking.basis == "task features and neighbour tasks"
        assert {r["model"] for r in ranking.rows} == {models[i] for i in np.argsort(-effect[:, c])[:3]}
    # Folding in keeps the width.
    assert fennec.fit(zoo, fold_in=True)["refit"] == "fold-in"
    assert zoo.read_fitted()[1]["bandwidth"] == meta["bandwidth"]


def test_zoo_evaluation_predicts_a_held_out_task_as_fit_and_rank_would(tmp_path):
    """`fennec eval --zoo` holds a task out exactly as a new task meets fennec: a zoo fitted
    without it, the task placed by its descriptor (and size) alone."""
    from fennec.evaluate import held_out_prediction, load_zoo_eval_data

    rng = np.random.default_rng(6)
    cluster = np.repeat(np.arange(3), 3)
    models = [f"m{i}" for i in range(10)]
    tasks = [f"t{j}" for j in range(len(cluster))]
    centre = rng.normal(0, 3, (3, 6))
    descriptors = centre[cluster] + rng.normal(0, 0.5, (len(cluster), 6))
    sizes = rng.integers(100, 5000, len(cluster))
    scores = 70 + 4 * rng.normal(0, 1, (10, 3))[:, cluster] + rng.normal(0, 0.5, (10, len(cluster)))

    def make(path, keep):
        zoo = fennec.Zoo.create(path)
        zoo.add_models([{"id": m} for m in models])
        zoo.add_tasks([{"id": tasks[j], "n_classes": 5, "n_train": int(sizes[j])} for j in keep])
        zoo.add_history(History.from_matrix(models, [tasks[j] for j in keep], scores[:, keep]))
        for j in keep:
            zoo.set_task_descriptor(tasks[j], descriptors[j])
        return zoo

    everything = make(tmp_path / "all", list(range(len(tasks))))
    data = load_zoo_eval_data(everything)
    target = 4
    predicted = held_out_prediction(data, target)
    without = make(tmp_path / "without", [j for j in range(len(tasks)) if j != target])
    fennec.fit(without)
    ranking = fennec.rank(without, {"descriptor": descriptors[target], "n_classes": 5,
                                    "n_train": int(sizes[target])}, k=len(models))
    assert [r["model"] for r in ranking.rows] == [models[i] for i in np.argsort(-predicted, kind="stable")]
