"""The run spec (what users POST) and the API's response shapes. Tables live in models.py."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# torch.manual_seed's range: a larger seed would be stored, then fail in the worker.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RunSpec(BaseModel):
    """A training job: the seed's experiment with every knob it varies. Defaults are the seed's."""

    # strict: a JSON true or "64" is no number; 422 rather than a silent conversion.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    name: Annotated[str | None, Field(max_length=200, description="a label for people")] = None
    weight_decay: Annotated[
        float,
        Field(ge=0, description="the optimizer's (coupled L2 for sgd/adam, decoupled for adamw)"),
    ] = 0.0
    epochs: Annotated[int, Field(ge=1, le=1000, description="passes over the training set")] = 50
    tolerances: Annotated[
        list[FiniteFloat],
        Field(
            min_length=1,
            max_length=32,
            description="a weight is constant when it moved by at most tol × its size",
        ),
    ] = [
        0.0,
        0.001,
        0.01,
        0.1,
    ]
    learning_rate: Annotated[float, Field(gt=0, description="the optimizer's step size")] = 0.01
    momentum: Annotated[
        float, Field(ge=0, lt=1, description="SGD momentum; Adam's β₁ for adam/adamw")
    ] = 0.9
    batch_size: Annotated[int, Field(ge=1, le=8192, description="samples per step")] = 64
    hidden_sizes: Annotated[
        list[Annotated[int, Field(ge=1, le=8192)]],
        Field(min_length=1, max_length=8, description="units of each hidden layer (3072 → … → 10)"),
    ] = [512, 512, 512]
    optimizer: Annotated[Literal["sgd", "adam", "adamw"], Field(description="the update rule")] = (
        "sgd"
    )
    dataset: Annotated[
        Literal["cifar10", "synthetic"],
        Field(description="synthetic: generated, CIFAR-shaped, needs no download"),
    ] = "cifar10"
    train_size: Annotated[
        int | None, Field(ge=1, description="the first N training samples (empty: all)")
    ] = None
    test_size: Annotated[
        int | None, Field(ge=1, description="the first N test samples (empty: all)")
    ] = None
    seed: Annotated[
        int, Field(ge=SEED_MIN, le=SEED_MAX, description="model initialisation and shuffling")
    ] = 0
    basis: Annotated[
        Literal["previous", "next"],
        Field(
            description="the size a move is measured against: the weight before the epoch "
            "(previous, the write-up's formula) or after it (next, what np.isclose computed)"
        ),
    ] = "previous"
    include_biases: Annotated[bool, Field(description="also measure the bias vectors")] = False
    keep_snapshots: Annotated[
        bool, Field(description="keep every epoch's weights for download")
    ] = False

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; refuse it on every database alike.
        if value is not None and "\x00" in value:
            raise ValueError("name must not contain NUL characters")
        return value

    @field_validator("tolerances")
    @classmethod
    def _distinct_ascending(cls, value: list[float]) -> list[float]:
        if any(t < 0 for t in value):
            raise ValueError("tolerances must be >= 0")
        if len(set(value)) != len(value):
            raise ValueError("tolerances must be distinct")
        return sorted(value)


class RunOut(BaseModel):
    id: int
    name: str | None
    status: RunStatus
    spec: RunSpec
    epochs_done: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    device: str | None
    worker: str | None
    attempts: int
    cancel_requested: bool
    note: str | None = None
    # Claims take higher priorities first, then the oldest (not part of the spec).
    priority: int = 0
    # The sweep the run is a member of (GET /sweeps/{id}).
    sweep_id: int | None = None


class RunList(BaseModel):
    total: int
    limit: int
    offset: int
    runs: list[RunOut]


class MetricsOut(BaseModel):
    run_id: int
    epochs: list[int]
    train_loss: list[float]
    train_accuracy: list[float]
    test_loss: list[float]
    test_accuracy: list[float]
    epoch_seconds: list[float]


class LayerConstancy(BaseModel):
    index: int
    name: str
    parameters: int
    percent: list[float]


class ConstancyOut(BaseModel):
    run_id: int
    tolerance: float
    basis: str
    epochs: list[int]
    layers: list[LayerConstancy]
    mean: list[float]
    last_two_mean: list[float]


class ConstancyAllOut(BaseModel):
    run_id: int
    basis: str
    tolerances: list[float]
    results: list[ConstancyOut]


class CompareRun(BaseModel):
    run_id: int
    name: str | None
    weight_decay: float
    epochs: list[int]
    percent: list[float]


class CompareOut(BaseModel):
    tolerance: float
    scope: str
    runs: list[CompareRun]


class CompareAllOut(BaseModel):
    scope: str
    tolerances: list[float]
    results: list[CompareOut]


class LayerWeightStats(BaseModel):
    index: int
    name: str
    parameters: int
    variance: list[float]


class WeightStatsOut(BaseModel):
    """Each measured layer's weight variance per epoch; epoch 0 is the initial weights."""

    run_id: int
    epochs: list[int]
    layers: list[LayerWeightStats]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` says what is wrong (422s keep FastAPI's list form)."""

    detail: str


# --- the mechanism: dead units and the movement spectrum ---


class HiddenUnits(BaseModel):
    """Hidden layer ``layer`` (the ReLU after Linear ``layer``): per epoch, how many of its
    ``units`` never fired for a training sample of that epoch, and which."""

    layer: int
    units: int
    dead: list[int]
    dead_units: list[list[int]]


class WeightUnits(BaseModel):
    """Weight matrix ``layer`` from epoch e-1 to e: its weights exactly unchanged
    (``constant``) and how many of those lie in a dead unit's incoming row or outgoing column
    (``explained``; each weight once)."""

    layer: int
    name: str
    parameters: int
    constant: list[int]
    explained: list[int]


class UnitsOut(BaseModel):
    run_id: int
    epochs: list[int]
    hidden: list[HiddenUnits]
    weights: list[WeightUnits]


class LayerSpectrum(BaseModel):
    index: int
    name: str
    parameters: int
    # percent[epoch position][tolerance position]: % of the layer's weights constant.
    percent: list[list[float]]


class SpectrumOut(BaseModel):
    """% of each layer's weights constant from epoch e-1 to e at every tolerance of the
    spectrum's ladder (the same for every run), with the run's basis."""

    run_id: int
    basis: str
    epochs: list[int]
    tolerances: list[float]
    layers: list[LayerSpectrum]


class CompareSpectrumRun(SpectrumOut):
    name: str | None
    weight_decay: float


class CompareSpectrumOut(BaseModel):
    """The runs' spectra side by side, in the order asked for."""

    runs: list[CompareSpectrumRun]


# --- sweeps (server/sweeps.py, server/routers/sweeps.py) ---

# A 32-bit database integer.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
Priority = Annotated[
    int,
    Field(
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="claims take higher priorities first, then the oldest run (default 0)",
    ),
]


class RunPatch(BaseModel):
    """What can change about a submitted run: when it is claimed, not what it computes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    priority: Priority


class SweepIn(BaseModel):
    """A grid of runs: ``base`` (a run spec, any of its fields) expanded over the cartesian
    product of ``grid`` (a RunSpec field → its values), the last field varying fastest."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str | None, Field(max_length=200, description="a label for people")] = None
    base: Annotated[
        dict[str, Any], Field(description="a run spec; every member starts from it")
    ] = {}
    grid: Annotated[
        dict[str, list[Any]],
        Field(min_length=1, description="spec field → the values it takes, e.g. seed: [0, 1, 2]"),
    ]
    priority: Priority = 0

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("name must not contain NUL characters")
        return value


class SweepProgress(BaseModel):
    runs: int
    by_status: dict[str, int]
    epochs_done: int
    epochs_total: int


class SweepBrief(BaseModel):
    id: int
    name: str | None
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    priority: int
    created_at: datetime
    # Derived from the members' when read: queued (all queued), running (any running, or some
    # queued and some finished), else failed (any failed), cancelled (any), succeeded.
    status: RunStatus
    progress: SweepProgress


class SweepOut(SweepBrief):
    runs: list[RunOut]


class SweepList(BaseModel):
    total: int
    limit: int
    offset: int
    sweeps: list[SweepBrief]


class GroupSeries(BaseModel):
    """A group of runs (the members that share ``values``) at each epoch they all have: the
    mean over its runs and the 95% interval mean ∓ t(0.975, n−1)·sd/√n (null when n = 1)."""

    values: dict[str, Any]
    run_ids: list[int]
    n: int
    epochs: list[int]
    mean: list[float]
    ci_low: list[float] | None
    ci_high: list[float] | None


class SweepConstancyOut(BaseModel):
    sweep_id: int
    tolerance: float
    scope: str
    by: list[str]
    groups: list[GroupSeries]


class SweepConstancyAllOut(BaseModel):
    sweep_id: int
    scope: str
    by: list[str]
    tolerances: list[float]
    results: list[SweepConstancyOut]


class SeriesStats(BaseModel):
    mean: list[float]
    ci_low: list[float] | None
    ci_high: list[float] | None


class GroupMetrics(BaseModel):
    values: dict[str, Any]
    run_ids: list[int]
    n: int
    epochs: list[int]
    train_loss: SeriesStats
    train_accuracy: SeriesStats
    test_loss: SeriesStats
    test_accuracy: SeriesStats


class SweepMetricsOut(BaseModel):
    sweep_id: int
    by: list[str]
    groups: list[GroupMetrics]


class GroupPoint(BaseModel):
    values: dict[str, Any]
    run_ids: list[int]
    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None


class SummaryLine(BaseModel):
    scope: str
    points: list[GroupPoint]


class SummaryAtTolerance(BaseModel):
    tolerance: float
    lines: list[SummaryLine]


class SweepSummaryOut(BaseModel):
    """Dose-response: every group's value at one epoch, per tolerance and scope."""

    sweep_id: int
    epoch: int
    by: list[str]
    # The numeric field of ``by`` the figure puts on its x axis (null: none is numeric).
    x: str | None
    tolerances: list[float]
    results: list[SummaryAtTolerance]


class GroupRef(BaseModel):
    index: int
    values: dict[str, Any]
    run_ids: list[int]
    n: int


class SweepDifferenceOut(BaseModel):
    """Group b minus group a per epoch with its 95% interval: Welch's (unequal variances,
    Welch–Satterthwaite df) or paired (runs matched by their other grid values, e.g. seed)."""

    sweep_id: int
    tolerance: float
    scope: str
    method: Literal["welch", "paired"]
    a: GroupRef
    b: GroupRef
    # paired: the matched run ids [a, b].
    pairs: list[list[int]] | None
    epochs: list[int]
    difference: list[float]
    ci_low: list[float] | None
    ci_high: list[float] | None
    df: list[float] | None
