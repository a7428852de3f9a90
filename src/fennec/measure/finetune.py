"""The ``finetune`` kind: a model's last block(s) and a new linear head trained on a task, held-out accuracy (%).

What was chosen, and why:

- **The split.** A trainable model is a frozen *trunk* (image batch -> activations) and a
  trainable *tail* (activations -> the pooled features the model's extractor reads), with a new
  linear head on top (:class:`TrainableSplit`). The catalogue declares the split of its torch
  models (:mod:`fennec.demozoo.catalogue`): EfficientNet-Lite: its last MBConv block and conv head;
  VGG16: its last convolution (conv5_3) and the pooling; MobileNetV2 (run for features as an ONNX
  graph built from the same checkpoint): its last inverted residual and final 1x1 convolution. A
  model registered with ``--torch MODULE:FACTORY`` is split by :func:`sequential_split`: when its
  top-level children, run in order, give the features the registered reference reads (checked on
  seeded noise images), the trunk is every child before the last one with parameters and the
  tail is that child and the rest. The tails are kept small so that the whole offline zoo is
  fine-tuned in minutes on two CPU cores.
- **Efficiency.** The trunk is frozen, so it runs once per image view, under ``torch.no_grad()``,
  and its activations are cached by content (model, fingerprint, split, images, revision) under
  ``cache_dir/finetune-trunk``: every task of a dataset shares one trunk pass of the dataset's
  pool, and only the tail and head are trained per task.
- **One fixed recipe** (:data:`RECIPE`, recorded in each result's source through
  :func:`recipe_text`): each training image as it is plus one random-resized crop of it (area
  0.8-1.0, aspect 3/4-4/3, drawn per image from the seed; no flips: digits and text are not
  mirror-invariant); AdamW, head lr 1e-3, tail lr 1e-4, weight decay 1e-4, 10 epochs, batch 32,
  cross-entropy, seed 0; the head starts from N(0, 0.01) weights; the tail stays in eval mode
  (BatchNorm keeps its running statistics and dropout / drop-connect are off: 30 images a class
  are too few to re-estimate them). Deterministic for a seed: local generators, deterministic
  torch algorithms while training, the process's torch thread count (Ray workers set it).
- **Models without a trainable split** (ONNX models: no ONNX-to-torch converter is a dependency;
  ``--torch`` modules whose children do not compose) are *not* stored as ``finetune``: a fit on
  ``--kind finetune`` reads every stored number as a fine-tuning result, and linear-probe numbers
  among them (lower, and only for some families of models) would teach it that those families
  transfer worse. Their finetune cell is recorded as a measure failure whose reason begins
  :data:`FALLBACK` and says why; they are measured by linear probe (kind ``linear_probe``, which
  the planner adds for the models it knows fall back: :func:`fennec.runnable.finetune_fallback`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    from ..proxy import Preprocess

__all__ = ["FALLBACK", "FINETUNE_REVISION", "RECIPE", "NotTrainable", "TrainableSplit", "crop_view",
           "finetune_accuracy", "pooled_tail", "recipe_text", "sequential_split", "trunk_activations"]

# Part of the trunk cache's key and of the recipe: raised whenever the recipe or a split changes.
FINETUNE_REVISION = 1
RECIPE: dict[str, Any] = {
    "epochs": 10, "batch_size": 32, "optimizer": "AdamW", "head_lr": 1e-3, "tail_lr": 1e-4, "weight_decay": 1e-4,
    "loss": "cross-entropy", "seed": 0, "head_init": "normal(0, 0.01), bias 0",
    "augmentation": "each training image as is plus one random-resized crop (area 0.8-1.0, aspect 3/4-4/3, "
                    "drawn per image from the seed), no flips",
    "tail_mode": "eval (BatchNorm running statistics kept, dropout and drop-connect off)",
}
CROP_AREA = (0.8, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
TRUNK_BATCH = 64
FALLBACK = "linear probe fallback"


class NotTrainable(Exception):
    """The model has no trainable split here (the message says why): it is measured by linear probe."""


@dataclass
class TrainableSplit:
    """A model as a frozen ``trunk`` (preprocessed batch -> activations) and a trainable ``tail``
    (activations -> (N, D) pooled features); ``trained`` names the tail's modules, ``key`` what
    identifies the trunk's weights and cut (part of the trunk cache's key)."""

    trunk: Any  # torch.nn.Module
    tail: Any  # torch.nn.Module
    preprocess: Preprocess
    trained: str
    key: str


def _torch_version() -> str:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def recipe_text() -> str:
    """The finetune kind's recipe, as kept in each result's ``source``."""
    settings = ", ".join(f"{k} {v}" for k, v in RECIPE.items())
    return (f"fine-tune (revision {FINETUNE_REVISION}): held-out accuracy (%) of the model's tail and a new linear "
            f"head trained on the training split, the frozen trunk run once per image view; {settings}; "
            "trained: EfficientNet-Lite its last MBConv block + conv head, VGG16 conv5_3, MobileNetV2 its last "
            "inverted residual + final 1x1 conv (torch module from the same checkpoint), a --torch module its last "
            "top-level child with parameters and what follows; models without a trainable split (ONNX) are "
            f"not stored as finetune ({FALLBACK}, recorded as the cell's failure); torch {_torch_version()}")


@contextmanager
def _deterministic(torch: Any) -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def crop_view(rgb: np.ndarray, seed: int, row: int) -> np.ndarray:
    """The fixed random-resized crop of one HxWx3 image: area and aspect drawn from (seed, row)."""
    rng = np.random.default_rng([seed, row])
    height, width = rgb.shape[:2]
    area = height * width * rng.uniform(*CROP_AREA)
    aspect = float(np.exp(rng.uniform(np.log(CROP_ASPECT[0]), np.log(CROP_ASPECT[1]))))
    w = int(min(width, max(1, round(np.sqrt(area * aspect)))))
    h = int(min(height, max(1, round(np.sqrt(area / aspect)))))
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return np.ascontiguousarray(rgb[top:top + h, left:left + w])


def trunk_activations(split: TrainableSplit, images: list[Any], *, crops: list[int] | None = None,
                      seed: int = 0) -> np.ndarray:
    """The trunk's activations of ``images`` (each as is, or its :func:`crop_view` of row ``crops[i]``)."""
    import torch

    from ..proxy import as_rgb

    out: list[np.ndarray] = []
    split.trunk.eval()
    with torch.no_grad():
        for start in range(0, len(images), TRUNK_BATCH):
            chunk = [as_rgb(image, f"images[{start + i}]") for i, image in enumerate(images[start:start + TRUNK_BATCH])]
            if crops is not None:
                chunk = [crop_view(rgb, seed, crops[start + i]) for i, rgb in enumerate(chunk)]
            batch = torch.from_numpy(split.preprocess.from_rgb(chunk))
            out.append(split.trunk(batch).float().numpy())
    activations = np.concatenate(out)
    if not np.isfinite(activations).all():
        raise ValueError("the model's trunk gave non-finite activations")
    return activations


def _pool(value: Any, tokens: str) -> Any:
    """A tail's output as (N, D) rows, as :func:`fennec.proxy.pool_output` reduces a model's output."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    if value.ndim == 1:
        return value[:, None]
    if value.ndim == 3:
        return value[:, 0] if tokens == "cls" else value.mean(dim=1)
    if value.ndim == 4:
        return value.mean(dim=(2, 3))
    if value.ndim != 2:
        raise ValueError(f"the tail gave an output of shape {tuple(value.shape)}; expected 1-D to 4-D")
    return value


def pooled_tail(tail: Any, tokens: str = "cls") -> Any:
    """``tail`` with its output reduced to (N, D) rows (a map: its mean over the spatial axes)."""
    from torch import nn

    class Pooled(nn.Module):
        """A tail whose output is reduced to (N, D) rows."""

        def __init__(self) -> None:
            super().__init__()
            self.tail = tail

        def forward(self, x: Any) -> Any:
            return _pool(self.tail(x), tokens)

    return Pooled()


def sequential_split(module: Any, preprocess: Preprocess, *, output: str | None = None, tokens: str = "cls",
                     key: str = "") -> TrainableSplit:
    """A registered torch module's split, when its top-level children run in order give the features its
    reference reads (at ``output``: a top-level child, or the module's own output); NotTrainable otherwise."""
    import torch
    from torch import nn

    from ..proxy import TorchBackend

    children = list(module.named_children())
    names = [name for name, _ in children]
    if output is not None:
        if output not in names:
            raise NotTrainable(f"its features are read at submodule {output!r}, not at one of its top-level "
                               "children, so no trunk/tail split is known")
        children = children[:names.index(output) + 1]
    trained = [i for i, (_, child) in enumerate(children) if any(True for _ in child.parameters())]
    if not trained:
        raise NotTrainable("its top-level children hold no parameters to train")
    rng = np.random.default_rng(0)
    height, width = preprocess.size
    batch = preprocess.from_rgb([rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)])
    module.eval()
    try:
        reference = TorchBackend(module, output=output, tokens=tokens).run(batch)
        with torch.no_grad():
            value = torch.from_numpy(batch)
            for _, child in children:
                value = child(value)
            composed = _pool(value, tokens).float().numpy()
    except Exception as error:  # a child that cannot take its predecessor's output: not a sequence
        raise NotTrainable(f"its top-level children do not run one after another ({type(error).__name__}: "
                           f"{str(error)[:200]})") from None
    if composed.shape != reference.shape or not np.allclose(composed, reference, rtol=1e-4, atol=1e-5):
        raise NotTrainable("its top-level children run in order do not give the features its reference reads "
                           "(its forward pass is not a plain sequence of them)")
    cut = trained[-1]
    trunk = nn.Sequential(*[child for _, child in children[:cut]]) if cut else nn.Identity()
    tail = pooled_tail(nn.Sequential(*[child for _, child in children[cut:]]), tokens)
    return TrainableSplit(trunk, tail, preprocess, ", ".join(name for name, _ in children[cut:]) + " (+ a new head)",
                          key or f"torch:{type(module).__qualname__}:{cut}:{output}:{tokens}")


def finetune_accuracy(split: TrainableSplit, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      y_test: np.ndarray, *, seed: int | None = None) -> float:
    """Held-out accuracy (%) of a copy of ``split.tail`` and a new head trained on trunk activations
    ``x_train`` (every view of every training image) with :data:`RECIPE`."""
    import torch
    from torch import nn

    seed = int(RECIPE["seed"] if seed is None else seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    tail = copy.deepcopy(split.tail)
    tail.eval()  # kept in eval mode while training: see RECIPE["tail_mode"]
    for parameter in tail.parameters():
        parameter.requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    xs = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    ys = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    with torch.no_grad():
        width = int(tail(xs[:1]).shape[1])
    head = nn.Linear(width, n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(n_classes, width, generator=generator) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.AdamW([{"params": list(tail.parameters()), "lr": RECIPE["tail_lr"]},
                                   {"params": list(head.parameters()), "lr": RECIPE["head_lr"]}],
                                  weight_decay=RECIPE["weight_decay"])
    loss_fn = nn.CrossEntropyLoss()
    batch_size = int(RECIPE["batch_size"])
    with _deterministic(torch):
        for _ in range(int(RECIPE["epochs"])):
            order = torch.randperm(len(xs), generator=generator)
            for start in range(0, len(xs), batch_size):
                index = order[start:start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(head(tail(xs[index])), ys[index])
                loss.backward()
                optimizer.step()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x_test), 256):
                chunk = torch.from_numpy(np.ascontiguousarray(x_test[start:start + 256], dtype=np.float32))
                predicted = head(tail(chunk)).argmax(dim=1).numpy()
                correct += int((predicted == np.asarray(y_test[start:start + 256])).sum())
    return 100.0 * correct / len(y_test)


def trunk_key(model: str, fingerprint: str, split_key: str, material: bytes) -> str:
    """What identifies a model's trunk activations of an image source (the trunk cache's key)."""
    from ..demozoo.catalogue import INPUT_SIZE

    return hashlib.sha256(f"{model}:{FINETUNE_REVISION}:{INPUT_SIZE}:{RECIPE['seed']}:{split_key}:{fingerprint}:"
                          .encode() + material).hexdigest()[:24]
