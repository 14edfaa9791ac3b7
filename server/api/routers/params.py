"""Path and query parameter types shared by the routers. Bad values answer 422 naming them."""

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator, Field

from server.core.schemas import SPEC_FIELDS
from server.core.scope import Scope as ScopeType

MAX_COMPARED_RUNS = 50
# Ids are 64-bit database integers: a larger one names no run (422, not a driver overflow).
# Written as an exclusive bound: 2**63 is exact as a JSON number read as a double, 2**63 - 1 not.
ID_LIMIT = 2**63
MAX_ID = ID_LIMIT - 1

RunId = Annotated[int, Path(ge=1, lt=ID_LIMIT, description="A run's id")]
SweepId = Annotated[int, Path(ge=1, lt=ID_LIMIT, description="A sweep's id")]
# A page of a list, newest first.
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page, 1..1000")]
Offset = Annotated[int, Query(ge=0, lt=ID_LIMIT, description="Items to skip (newest first), >= 0")]

Tolerance = Annotated[
    float | None,
    Query(
        ge=0,
        allow_inf_nan=False,
        description="A tolerance: one a run computed, one on the movement spectrum's ladder, "
        "or any for a run with keep_snapshots (the same in every view); without it, every "
        "tolerance the runs computed.",
    ),
]


def _split_commas(value: object) -> object:
    # Accept both ?runs=1,2 and ?runs=1&runs=2.
    if isinstance(value, list):
        return [part.strip() for item in value for part in str(item).split(",")]
    return value


def _distinct(ids: list[int]) -> list[int]:
    if len(set(ids)) != len(ids):
        raise ValueError("run ids must be distinct")
    return ids


def _distinct_fields(fields: list[str] | None) -> list[str] | None:
    if fields is not None and len(set(fields)) != len(fields):
        raise ValueError("fields must be distinct")
    return fields


RunIds = Annotated[
    list[Annotated[int, Field(ge=1, lt=ID_LIMIT)]],
    BeforeValidator(_split_commas),
    AfterValidator(_distinct),
    Query(
        min_length=1,
        max_length=MAX_COMPARED_RUNS,
        json_schema_extra={"uniqueItems": True},
        description="Distinct run ids, 1..50: comma-separated (runs=1,2) or repeated "
        "(runs=1&runs=2)",
    ),
]

# Spectra side by side: a row of heatmaps per run, readable (and drawn in time) for a few.
MAX_COMPARED_SPECTRA = 8
SpectrumRunIds = Annotated[
    list[Annotated[int, Field(ge=1, lt=ID_LIMIT)]],
    BeforeValidator(_split_commas),
    AfterValidator(_distinct),
    Query(
        min_length=1,
        max_length=MAX_COMPARED_SPECTRA,
        json_schema_extra={"uniqueItems": True},
        description="Distinct run ids, 1..8: comma-separated (runs=1,2) or repeated "
        "(runs=1&runs=2)",
    ),
]

Scope = Annotated[
    ScopeType,
    Query(description="all: mean of all layers; last2: mean of the last two; or a layer index"),
]

# A sweep's groups are made by run spec fields; "" (by= alone) names none: one group of all.
GroupField = Literal[(*SPEC_FIELDS, "")]  # type: ignore[valid-type]
By = Annotated[
    list[GroupField] | None,
    BeforeValidator(_split_commas),
    AfterValidator(_distinct_fields),
    Query(
        json_schema_extra={"uniqueItems": True},
        description="Distinct run spec fields the groups are made by, comma-separated "
        "(by=weight_decay,seed) or repeated; default: every grid field but seed; by= alone "
        "(the empty name): one group of every member",
    ),
]
