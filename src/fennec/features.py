"""Side information of models and tasks, assembled once for fit, rank and evaluate.

Models: the zoo's metadata columns as a design matrix (categorical columns that
merely name each model left out), and the first principal components of their
archi2vec embeddings. Known tasks: log10 of their size and class count where
every task has them, and their proxy descriptors. A new task: the same features,
checked against what the fitted space takes (:func:`check_task`), then placed
among the known tasks (:func:`place_task`). The library, the command line and
the service all check a task here, so the same bad input reads the same
everywhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import brief, identifier
from .space import TransferSpace
from .space.fit import MIN_DESCRIBED_TASKS

if TYPE_CHECKING:
    from .zoo import Zoo

__all__ = ["EMBEDDING_DIMS", "EXTRAPOLATION_MIN_DECADES", "EXTRAPOLATION_SPANS", "GROUND_TRUTH_KINDS", "KnownTasks",
           "TASK_NUMERIC_FEATURES", "TaskPlacement", "check_observed", "check_task", "fitted_feature_range",
           "identifier_like", "known_tasks", "model_side_information", "place_task", "related_tasks",
           "stored_forward_scores"]

TASK_NUMERIC_FEATURES = ("n_classes", "n_train")  # log10 of each, when every known task has it
EMBEDDING_DIMS = 3  # archi2vec embeddings enter the transfer space as this many principal components
PRIOR_BASIS = "the prior (no information about the task)"
# A new task's named feature may lie this many times the known tasks' span (on the log10
# scale the space takes it on) beyond either end of that span, and at least this many
# decades, before it is clamped there with a note. Predictions are linear in the feature, so
# past the known tasks they grow without bound: n_train=1e308 would predict scores far
# beyond any measured, while a task a little larger than the largest known one extrapolates
# as the fitted trend says.
EXTRAPOLATION_SPANS = 1.0
EXTRAPOLATION_MIN_DECADES = 1.0
NO_DESCRIPTOR_NOTE = "no descriptor given"  # how a ranking's note starts when the descriptor was left out


def identifier_like(values: Sequence[Any]) -> bool:
    """A column whose values are mostly unique names identifies rows; it is not a category."""
    present = [v for v in values if v]
    return len(set(present)) > max(2, 0.2 * len(values))


def model_side_information(zoo: Zoo, models: Sequence[str], *,
                           embeddings: bool = True) -> tuple[np.ndarray | None, list[str]]:
    """The models' numeric side information and its column names (``None, []`` when there is none).

    Metadata columns through the zoo's design matrix, leaving out categorical
    columns that merely name each model; with ``embeddings``, and when every model
    has an architecture embedding, its first principal components over the zoo.
    """
    table = zoo.model_table()
    kept = {name: values for name, values in table.categorical.items() if not identifier_like(values)}
    table = type(table)(table.keys, table.numeric, kept, key_name=table.key_name)
    blocks, columns = [], []
    if len(table):
        design, names = table.design_matrix(models)
        if design.shape[1]:
            blocks.append(design)
            columns += names
    stored = zoo.model_embeddings() if embeddings else {}
    if stored and all(m in stored for m in models) and len(models) > EMBEDDING_DIMS:
        x = np.stack([stored[m] for m in models]).astype(np.float64)
        x -= x.mean(0)
        u, sv, _ = np.linalg.svd(x, full_matrices=False)
        dims = int(min(EMBEDDING_DIMS, np.sum(sv > 1e-9 * max(sv[0], 1e-300))))
        if dims:
            blocks.append(u[:, :dims] * sv[:dims])
            columns += [f"archi2vec_{i}" for i in range(dims)]
    if not blocks:
        return None, []
    return np.column_stack(blocks), columns


@dataclass(frozen=True)
class KnownTasks:
    """The known tasks' side information: the named features as stored (``values``, tasks x
    len(columns), None when no feature is known for every task) and the proxy descriptors
    (tasks x D, None unless every task has one of the same width and there are enough), and
    which of them share data."""

    tasks: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray | None
    descriptors: np.ndarray | None
    # tasks x tasks, True where two tasks share data (:func:`related_tasks`); None: not recorded
    related: np.ndarray | None = None

    @property
    def features(self) -> np.ndarray | None:
        """The named features as the transfer space takes them (log10 of each)."""
        return None if self.values is None else np.log10(self.values)

    def subset(self, rows: np.ndarray) -> KnownTasks:
        """These tasks' information, for the tasks at ``rows`` only."""
        return KnownTasks(tuple(self.tasks[i] for i in rows), self.columns,
                          None if self.values is None else self.values[rows],
                          None if self.descriptors is None else self.descriptors[rows],
                          None if self.related is None else self.related[np.ix_(rows, rows)])

    def as_new_task(self, row: int) -> dict[str, Any]:
        """Task ``row`` described as a new task would be given to :func:`fennec.rank`."""
        task: dict[str, Any] = {}
        if self.values is not None:
            task.update(zip(self.columns, self.values[row].tolist()))
        if self.descriptors is not None:
            task["descriptor"] = self.descriptors[row]
        return task


def known_tasks(zoo: Zoo, tasks: Sequence[str]) -> KnownTasks:
    """The side information of the zoo's ``tasks`` (see :class:`KnownTasks`)."""
    tasks = tuple(tasks)
    rows = {row["id"]: row for row in zoo.tasks()}
    names = tuple(f for f in TASK_NUMERIC_FEATURES
                  if tasks and all(rows.get(t, {}).get(f) not in (None, 0) for t in tasks))
    values = np.array([[float(rows[t][f]) for f in names] for t in tasks]) if names else None
    stored = zoo.task_descriptors()
    descriptors = None
    if len(tasks) >= MIN_DESCRIBED_TASKS and all(t in stored for t in tasks) and \
            len({stored[t].shape for t in tasks}) == 1:
        descriptors = np.stack([stored[t] for t in tasks])
    return KnownTasks(tasks, names, values, descriptors, related_tasks([rows.get(t, {"id": t}) for t in tasks]))


def related_tasks(rows: list[dict[str, Any]]) -> np.ndarray | None:
    """Which tasks share data, from each task's ``dataset`` and ``classes`` (comma-separated).

    Two tasks are related when they come from the same dataset and share a class, or one
    of them has no class list (the whole dataset); a task without a dataset is related to
    itself only. None when no task records a dataset: then nothing is known.
    """
    def meta(row: Mapping[str, Any]) -> tuple[Any, set[str] | None]:
        extra = row.get("extra") or {}
        dataset = row.get("dataset", extra.get("dataset"))
        classes = row.get("classes", extra.get("classes"))
        names = None if classes in (None, "") else {c.strip() for c in str(classes).split(",") if c.strip()}
        return dataset, names

    info = [meta(row) for row in rows]
    if all(dataset is None for dataset, _ in info):
        return None
    out = np.eye(len(rows), dtype=bool)
    for i, (dataset_i, classes_i) in enumerate(info):
        for j, (dataset_j, classes_j) in enumerate(info[:i]):
            if dataset_i is not None and dataset_i == dataset_j and \
                    (classes_i is None or classes_j is None or bool(classes_i & classes_j)):
                out[i, j] = out[j, i] = True
    return out


@dataclass(frozen=True)
class TaskPlacement:
    """A new task in a fitted space: its side information in the space's task columns and its
    distances to the known tasks (each None where not known), what the ranking rests on, and
    notes for the user."""

    features: np.ndarray | None
    distances: np.ndarray | None
    basis: str
    notes: tuple[str, ...] = ()


def check_task(space: TransferSpace, task: Mapping[str, Any] | Sequence[float] | None) -> dict[str, Any] | None:
    """The task as a dict of known features (None: nothing known), or a ValueError naming the problem.

    ``task`` maps feature names (this space's :attr:`~TransferSpace.named_features`, and
    ``descriptor`` where the space takes one) to values, or lists the named features' values
    in order. Unknown names are refused: a misspelt feature would otherwise be dropped silently.
    """
    if task is None:
        return None
    names = space.named_features
    descriptor = space.takes_descriptor
    if isinstance(task, (list, tuple)):
        if len(task) != len(names) or descriptor:
            raise ValueError(f"task: {len(task)} value(s) given, this zoo's task features are {len(names)}: "
                             f"{names}" + ("; give them by name, with the 'descriptor'" if descriptor else ""))
        task = dict(zip(names, task))
    if not isinstance(task, Mapping):
        raise TypeError(f"task: expected a dict of feature -> value, got {type(task).__name__}")
    if not task:
        return None
    known = set(names) | ({"descriptor"} if descriptor else set())
    unknown = sorted(str(name) for name in task if name not in known)
    if unknown:
        if not known:
            raise ValueError(f"task: unknown feature(s) {unknown}; this zoo was fitted without task features: "
                             "rank with none (the prior), or give its tasks n_classes, n_train or a descriptor "
                             "and refit")
        raise ValueError(f"task: unknown feature(s) {unknown}; this zoo's task features are {names}"
                         + (" and a 'descriptor'" if descriptor else ""))
    lists = sorted(name for name, value in task.items()
                   if name != "descriptor" and isinstance(value, (list, tuple, np.ndarray)))
    if lists:
        raise ValueError(f"task: {lists} must be numbers, not lists")
    for name, value in task.items():
        # bool is an int to Python, and float() reads text: neither is a measured size.
        if name != "descriptor" and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
            raise ValueError(f"task: {name} must be a positive number, got {brief(value)}")
    return dict(task)


def fitted_feature_range(space: TransferSpace) -> tuple[np.ndarray, np.ndarray] | None:
    """The span of the known tasks' named features, on the log10 scale the space takes them
    on, as (lowest, highest) per feature; None when the space does not store them."""
    known = space.task_features
    count = len(space.named_features)
    if known is None or count == 0:
        return None
    values = np.asarray(known, dtype=float)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] < count:
        return None
    values = values[:, :count]  # the named features come first, the descriptor's coordinates after
    return values.min(0), values.max(0)


def _clamp_to_fitted_range(space: TransferSpace, task: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The task with each named feature far outside the known tasks' span (see
    :data:`EXTRAPOLATION_SPANS`) clamped to the farthest value allowed, and a note for each."""
    fitted = fitted_feature_range(space)
    if fitted is None:
        return task, ()
    notes = []
    for name, low, high in zip(space.named_features, *fitted):
        try:
            value = float(task[name])
        except (KeyError, TypeError, ValueError):
            continue  # missing or not a number: refused, or ranked without it, as placing says
        if not math.isfinite(value) or value <= 0:
            continue
        margin = max(EXTRAPOLATION_SPANS * (high - low), EXTRAPOLATION_MIN_DECADES)
        bound = min(max(math.log10(value), low - margin), high + margin)
        if bound != math.log10(value):
            used = 10.0 ** bound
            task = {**task, name: used}
            notes.append(f"task: {name}={value:g} is far outside the zoo's tasks ({10.0 ** low:g} to "
                         f"{10.0 ** high:g}); ranked as {name}={used:.4g}, the farthest fennec extrapolates "
                         f"(the tasks' span again beyond either end, at least "
                         f"{10.0 ** EXTRAPOLATION_MIN_DECADES:g}x)")
    return task, tuple(notes)


def check_observed(space: TransferSpace, observed: Mapping[str, Any] | None,
                   what: str = "observed") -> tuple[np.ndarray, np.ndarray] | None:
    """Observed scores on the new task (or, with ``what``, other per-model scores such as a
    forward-pass metric's) as (model rows, scores), or a ValueError naming the problem."""
    if not observed:
        return None
    if not isinstance(observed, Mapping):
        raise TypeError(f"{what}: expected a dict of model -> score, got {type(observed).__name__}")
    index = space.row_of
    rows, scores = [], []
    for model, score in observed.items():
        identifier(model, f"{what}: model id")
        if model not in index:
            raise ValueError(f"{what}: unknown model {model!r}")
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: the score of {model!r} must be a number, got {score!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{what}: the score of {model!r} is not finite")
        rows.append(index[model])
        scores.append(value)
    return np.array(rows, dtype=np.int64), np.array(scores, dtype=np.float64)


def place_task(space: TransferSpace, task: Mapping[str, Any] | Sequence[float] | None) -> TaskPlacement:
    """A new task, described as :func:`check_task` takes it, placed in ``space``.

    Where the fit chose to use no task information, the task ranks by the prior (with a
    note); its features are still placed when all are given, for baselines that use them.
    """
    task = check_task(space, task)
    if not task:
        return TaskPlacement(None, None, PRIOR_BASIS)
    task, clamped = _clamp_to_fitted_range(space, task)
    placement = _place_checked(space, task)
    if clamped and placement.basis != PRIOR_BASIS:  # said only where the features are used
        placement = replace(placement, notes=(*placement.notes, *clamped))
    return placement


def _place_checked(space: TransferSpace, task: dict[str, Any]) -> TaskPlacement:
    """:func:`place_task` of a task :func:`check_task` has accepted."""
    missing = [c for c in space.named_features if c not in task]
    if space.takes_descriptor and "descriptor" not in task:
        missing.append("descriptor")
    if not space.uses_task_information:
        notes = ("the fitted zoo has no task side information; task features are not used",)
        if missing or (space.takes_descriptor and space.encoder is None):
            return TaskPlacement(None, None, PRIOR_BASIS, notes)
        return TaskPlacement(*_task_side_information(space, task), PRIOR_BASIS, notes)
    if missing == ["descriptor"]:
        return _place_without_descriptor(space, task)
    if missing:
        raise ValueError(f"task: missing feature(s) {missing}; this zoo was fitted with {list(space.task_columns)}")
    basis = "task features" if space.neighbour_basis is None else "task features and neighbour tasks"
    return TaskPlacement(*_task_side_information(space, task), basis)


def _place_without_descriptor(space: TransferSpace, task: Mapping[str, Any]) -> TaskPlacement:
    """A task given by its named features alone in a space fitted with descriptors.

    The descriptor's coordinates are set to the known tasks' mean (zero once standardised),
    so the side-information term uses the named features only, and with no distances the
    task has no neighbour tasks. This is the fitted model's answer for an average-looking
    task of that size, which beats refusing a user who has no images at hand.
    """
    names = ", ".join(space.named_features)
    if space.interaction is None or space.task_mean is None:
        return TaskPlacement(None, None, PRIOR_BASIS, (
            f"{NO_DESCRIPTOR_NOTE}: this zoo places tasks by their descriptor only, so {names} "
            "were not used",))
    named, _ = _task_side_information(space, task, with_descriptor=False)
    mean = np.asarray(space.task_mean, dtype=float)
    features = np.concatenate([named, mean[len(named):]])
    note = (f"{NO_DESCRIPTOR_NOTE}: placed by {names} only, as a task with the known tasks' average "
            "descriptor" + (" and no neighbour tasks" if space.neighbour_basis is not None else ""))
    return TaskPlacement(features, None, f"task features ({names}; no descriptor)", (note,))


def _task_side_information(space: TransferSpace, task: Mapping[str, Any], *,
                           with_descriptor: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The task's features in the space's task columns, and its descriptor's distances to the
    known tasks' (None when the space takes no descriptor; ``with_descriptor=False``: the named
    features only)."""
    values = []
    for name in space.named_features:
        try:
            value = float(task[name])
        except (TypeError, ValueError):
            raise ValueError(f"task: {name} must be a positive number, got {task[name]!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"task: {name} must be a positive number, got {value:g}")
        values.append(value)
    features = np.log10(np.array(values, dtype=float))
    if not space.takes_descriptor or not with_descriptor:
        return features, None
    try:
        descriptor = np.asarray(task["descriptor"], dtype=float)
    except (TypeError, ValueError):
        raise ValueError("task: descriptor must be a vector of numbers") from None
    if descriptor.ndim != 1:
        raise ValueError(f"task: descriptor must be one vector, got shape {descriptor.shape}")
    if space.encoder is None:
        raise ValueError("task: this zoo's fitted state has no descriptor encoder; refit it (fennec zoo fit)")
    distances = space.encoder.distances(descriptor)
    return np.concatenate([features, space.encoder.embedding.place(distances)]), distances


# The kinds of result that measure fine-tuning itself; every other stored kind (logme, parc,
# knn...) is a forward-pass metric's score.
GROUND_TRUTH_KINDS = ("finetune", "linear_probe")


def stored_forward_scores(zoo: Zoo, models: Sequence[str], tasks: Sequence[str],
                          truth_kind: str) -> dict[str, np.ndarray]:
    """The zoo's forward-pass metric scores (every kind but ``truth_kind`` and the fine-tuning
    kinds), each as a ``models`` x ``tasks`` matrix, NaN where not measured."""
    at_model = {m: i for i, m in enumerate(models)}
    at_task = {t: j for j, t in enumerate(tasks)}
    forward: dict[str, np.ndarray] = {}
    for kind in zoo.history_kinds():
        if kind == truth_kind or kind in GROUND_TRUTH_KINDS:
            continue
        scores = zoo.history(kind)
        matrix = np.full((len(models), len(tasks)), np.nan)
        for i, j, value in zip(scores.model_index, scores.task_index, scores.scores):
            m, t = scores.models[i], scores.tasks[j]
            if m in at_model and t in at_task:
                matrix[at_model[m], at_task[t]] = value
        forward[kind] = matrix
    return forward
