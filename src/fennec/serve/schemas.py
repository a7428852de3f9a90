"""The bodies the service reads and answers, as Pydantic models (the OpenAPI schema's components)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      WithJsonSchema)

from .._checks import MAX_ID_LENGTH, identifier
from ..space import CHOICE_RULES, check_choice

__all__ = ["MAX_K", "MAX_PAGE", "Comparison", "Finite", "ForwardPasses", "Health", "HistoryRequest", "HistoryRow",
           "ImageRankRequest", "LabelledImage", "ModelRow", "ModelsPage", "ModelsRequest", "Problem", "RankRequest",
           "RankResponse", "RankedModel", "Scalar", "WriteResponse"]

MAX_K = 1000
MAX_PAGE = 1000

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]
# A model or task id, checked as the zoo checks it, so that a bad one is refused with the field's name.
Id = Annotated[StrictStr, AfterValidator(lambda value: identifier(value, "id")), WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
     "description": "printable text (no control characters), no whitespace at either end"})]


# The rule that picks a budget's models, checked as the library checks it.
Choice = Annotated[StrictStr, AfterValidator(check_choice), WithJsonSchema({"enum": list(CHOICE_RULES)})]


class Comparison(BaseModel):
    """A comparison filter: keeps models whose field compares true with ``value``."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: Union[Finite, StrictStr]


class RankRequest(BaseModel):
    """What is known about the new task, which models may be recommended, and how many."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"task": {"n_classes": 10, "n_train": 5000}, "where": {"family": "resnet"}, "k": 5},
        {"observed": {"resnet50": 81.2, "vit_b16": 84.0}, "k": 10},
        {"task": [10, 5000], "where": {"n_params": {"op": "<=", "value": 3e7}}},
    ]})
    task: Union[dict[str, Union[Finite, list[Finite]]], list[Finite], None] = Field(
        None, description="task features by name (a task descriptor as a list under 'descriptor'), or a "
                          "list of the named features in the order GET /healthz gives as task_features; "
                          "none: rank by the prior")
    observed: Union[dict[str, Finite], None] = Field(
        None, description="scores already measured on the new task, by model id")
    where: Union[dict[str, Union[Scalar, list[Scalar], Comparison]], None] = Field(
        None, description="metadata filters: a value (equal), a list (one of), or {op, value}")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="how many models to return")


class RankedModel(BaseModel):
    """One recommended model, with its metadata fields beside the scores."""

    model_config = ConfigDict(extra="allow")
    rank: int
    model: str
    score: float = Field(description="predicted score on the history's scale")
    uncertainty: float = Field(description="the model's spread around its prior, same scale")
    observed: Union[float, None] = Field(None, description="the measured score, when it was given")


class ForwardPasses(BaseModel):
    """What a request's budget of forward passes was spent on."""

    model_config = ConfigDict(extra="allow")
    metric: Union[str, None] = Field(description="the forward-pass metric the zoo's fit fuses (none: nothing ran)")
    chosen_by: str = Field(
        description="the rule that chose them: top (the best predicted) or change (the largest expected change to "
                    "the top of the ranking)")
    models: list[str] = Field(description="the models run over the images, best predicted first")
    scores: dict[str, float] = Field(description="each run model's metric score")
    seconds: dict[str, float] = Field(description="what each model's forward passes cost, in seconds")
    total_seconds: float
    failed: dict[str, str] = Field(description="models that could not be run (they keep their prediction), and why")


class RankResponse(BaseModel):
    version: int = Field(description="the fitted version the ranking came from")
    basis: str
    notes: list[str]
    rows: list[RankedModel]
    forward_passes: Union[ForwardPasses, None] = Field(
        None, description="POST /rank/images with a budget: which models ran, their scores, their cost")


class LabelledImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: StrictStr = Field(min_length=1)
    data: StrictStr = Field(description="the encoded image file (PNG, JPEG...), base64")


class ImageRankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[LabelledImage] = Field(min_length=1)
    where: Union[dict[str, Union[Scalar, list[Scalar], Comparison]], None] = None
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    # Strict: "7" or true is a mistake in the client, not a budget.
    budget: Union[Annotated[StrictInt, Field(ge=1)], Literal["all"], None] = Field(
        None, description="run at most this many of the best predicted models (or 'all' that can be run) over "
                          "the images, score them with the forward-pass metric the zoo's fit fuses, and fuse; "
                          "at most the server's --max-budget")
    metric: Union[Annotated[StrictStr, Field(min_length=1)], None] = Field(
        None, description="with budget: the forward-pass metric (must be the one the zoo's fit fuses)")
    choose: Union[Choice, None] = Field(
        None, description="with budget: which models run, the best predicted ('top', the default) or those whose "
                          "forward pass is expected to change the top of the ranking most ('change')")


class ModelRow(BaseModel):
    """A model's side information; fields beyond these are kept as its extra metadata."""

    model_config = ConfigDict(extra="allow")
    id: Id
    architecture: Union[StrictStr, None] = None
    family: Union[StrictStr, None] = None
    n_params: Union[Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)], None] = None
    source_dataset: Union[StrictStr, None] = None
    input_size: Union[Annotated[int, Field(strict=True, ge=0)], None] = None
    license: Union[StrictStr, None] = None


class ModelsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ModelRow] = Field(min_length=1)
    replace: StrictBool = Field(False, description="overwrite the side information of ids already stored")


class HistoryRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Id
    task: Id
    score: Finite
    kind: Union[StrictStr, None] = Field(
        None, min_length=1,
        description="the kind of result; left out, the kind the zoo's current fit was learnt from, else the "
                    "zoo's only kind, else finetune (a zoo of several kinds and no fit answers 409)")
    source: Union[StrictStr, None] = None


class HistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[HistoryRow] = Field(min_length=1)
    replace: StrictBool = Field(False, description="overwrite results already stored for the same model, task, "
                                                   "kind")
    strict: StrictBool = Field(False, description="refuse unknown model or task ids instead of adding them")


class WriteResponse(BaseModel):
    added: int
    fitted_version: Union[int, None]
    note: str
    kinds: Union[list[str], None] = Field(None, description="POST /history: the kinds the rows were stored as")


class ModelsPage(BaseModel):
    total: int
    offset: int
    limit: int
    models: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    fitted_version: Union[int, None]
    models: int = Field(description="models in the fitted state held in memory")
    task_features: list[str] = Field(description="the named task features the zoo was fitted with")
    descriptor: bool = Field(description="whether the zoo was fitted with task descriptors ('descriptor')")


class Problem(BaseModel):
    detail: Any
