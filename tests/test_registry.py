"""Registering models with their architecture: a model with no history gets ranked."""

from __future__ import annotations

import numpy as np
import pytest

import fennec
from fennec.history import History
from fennec.registry import add_model

torch = pytest.importorskip("torch", reason="archi2vec from torch modules needs torch (fennec[torch])")


def plain_cnn(width):
    return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU(), torch.nn.Conv2d(width, width, 3),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(width, 10))


def mlp(width):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, width), torch.nn.GELU(),
                               torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, 10))


def test_a_new_model_is_ranked_by_its_architecture(tmp_path):
    """CNNs win every task; a new CNN with no history must rank among the CNNs."""
    zoo = fennec.Zoo.create(tmp_path / "zoo")
    rng = np.random.default_rng(0)
    models, is_cnn = [], []
    for i in range(12):
        cnn = i % 2 == 0
        module = plain_cnn(8 * (1 + i // 2)) if cnn else mlp(16 * (1 + i // 2))
        add_model(zoo, f"m{i}", module)
        models.append(f"m{i}")
        is_cnn.append(cnn)
    tasks = [f"t{j}" for j in range(6)]
    scores = 60 + 10 * np.array(is_cnn, dtype=float)[:, None] + rng.normal(0, 1, (12, 6))
    zoo.add_history(History.from_matrix(models, tasks, scores))
    summary = add_model(zoo, "new_cnn", plain_cnn(40))
    assert summary["route"] == "fx" and summary["embedding_dim"] > 0
    fit = fennec.fit(zoo)
    assert fit["n_models"] == 13
    rows = fennec.rank(zoo, k=13).rows
    position = [r["model"] for r in rows].index("new_cnn")
    assert position < 7, rows  # among the six CNNs with history, not among the MLPs


def test_an_untraceable_model_leaves_the_zoo_unchanged(tmp_path):
    zoo = fennec.Zoo.create(tmp_path / "zoo")

    class Dynamic(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow: fx cannot trace it

    with pytest.raises(ValueError, match="example_input"):
        add_model(zoo, "dyn", Dynamic())
    with pytest.raises(fennec.ZooError, match="no such ONNX file"):
        add_model(zoo, "missing", str(tmp_path / "missing.onnx"))
    assert zoo.models() == [] and zoo.model_embeddings() == {}
