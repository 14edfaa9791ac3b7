"""The run spec (what users POST) and the API's response shapes. Tables live in models.py."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

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
