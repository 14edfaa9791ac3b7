"""The run spec (what users POST) and the API's response shapes. Tables live in models.py."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from server.core.experiment import DATASET_SIZES

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _integral(value: object) -> object:
    # JSON Schema's "integer" admits 64.0: the document promises it, so it is 64. Strings and
    # booleans are still refused by the strict int check that follows.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; refuse it on every database alike.
    if value is not None and "\x00" in value:
        raise ValueError("name must not contain NUL characters")
    return value


def _distinct_ascending(value: list[float]) -> list[float]:
    if len(set(value)) != len(value):
        raise ValueError("tolerances must be distinct")
    return sorted(value)


# The rules each field carries in its type (not as the model's validators), so that a sweep's
# grid, whose items have the field's type, checks its values alike.
Integral = BeforeValidator(_integral)
NoNul = AfterValidator(_no_nul)


# torch.manual_seed's range: a larger seed would be stored, then fail in the worker. The upper
# bound is exclusive (< 2**64): 2**64 - 1 has no exact spelling as a JSON number that a client
# reads as a double, 2**64 has.
SEED_MIN, SEED_LIMIT = -(2**63), 2**64
SEED_MAX = SEED_LIMIT - 1
CIFAR10_TRAIN, CIFAR10_TEST = DATASET_SIZES["cifar10"]
# CIFAR-10 (the default dataset) has 50,000/10,000 samples: train_size and test_size are bounded
# unless the dataset is synthetic. server/store/limits.py refuses the same (422 naming the field).
CIFAR10_SIZES: dict[str, Any] = {
    "if": {"properties": {"dataset": {"const": "synthetic"}}, "required": ["dataset"]},
    "else": {
        "properties": {
            "train_size": {
                "anyOf": [{"type": "integer", "maximum": CIFAR10_TRAIN}, {"type": "null"}]
            },
            "test_size": {
                "anyOf": [{"type": "integer", "maximum": CIFAR10_TEST}, {"type": "null"}]
            },
        }
    },
}
# What Swagger offers as the spec to try: a small synthetic run, about a minute on a CPU.
EXAMPLE_SPEC = {
    "name": "no decay",
    "weight_decay": 0,
    "dataset": "synthetic",
    "epochs": 5,
    "train_size": 1000,
    "test_size": 500,
}


# What Swagger offers as the sweep to try: two weight decays times two seeds of that run.
EXAMPLE_SWEEP = {
    "name": "decay vs seed",
    "base": {k: v for k, v in EXAMPLE_SPEC.items() if k not in ("name", "weight_decay")},
    "grid": {"weight_decay": [0, 0.001], "seed": [0, 1]},
}


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class RunSpec(BaseModel):
    """A training job: the original experiment with every knob it varies; the defaults are the
    original experiment's (see the description of each field)."""

    # strict: a JSON true or "64" is no number; 422 rather than a silent conversion.
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        strict=True,
        json_schema_extra={"examples": [EXAMPLE_SPEC], **CIFAR10_SIZES},
    )

    name: Annotated[
        str | None,
        Field(max_length=200, description="A label for the run: at most 200 characters, no NUL."),
        NoNul,
    ] = None
    weight_decay: Annotated[
        float,
        Field(
            ge=0,
            description="The optimizer's weight decay: coupled L2 for SGD and Adam, decoupled "
            "for AdamW. The original experiment: 0 (its baseline) and 0.001.",
        ),
    ] = 0.0
    epochs: Annotated[
        int,
        Field(ge=1, le=1000, description="Epochs to train (the original experiment: 50)."),
        Integral,
    ] = 50
    tolerances: Annotated[
        list[Annotated[FiniteFloat, Field(ge=0)]],
        Field(
            min_length=1,
            max_length=32,
            json_schema_extra={"uniqueItems": True},
            description="Tolerances to count constant weights at, stored ascending. A weight "
            "is constant at tol when |w_e - w_(e-1)| <= tol * |w_ref| (w_ref: see basis).",
        ),
        AfterValidator(_distinct_ascending),
    ] = [0.0, 0.001, 0.01, 0.1]
    learning_rate: Annotated[
        float, Field(gt=0, description="The optimizer's learning rate (the original: 0.01).")
    ] = 0.01
    momentum: Annotated[
        float,
        Field(ge=0, lt=1, description="SGD's momentum, Adam's beta1 (the original: 0.9)."),
    ] = 0.9
    batch_size: Annotated[
        int,
        Field(ge=1, le=8192, description="Samples per training batch (the original: 64)."),
        Integral,
    ] = 64
    hidden_sizes: Annotated[
        list[Annotated[int, Field(ge=1, le=8192), Integral]],
        Field(
            min_length=1,
            max_length=8,
            description="Units of each hidden layer (the MLP maps 3072 inputs through them to "
            "10 classes; the original experiment: three layers of 512).",
        ),
    ] = [512, 512, 512]
    optimizer: Annotated[
        Literal["sgd", "adam", "adamw"],
        Field(description="SGD (the original experiment's), Adam or AdamW."),
    ] = "sgd"
    dataset: Annotated[
        Literal["cifar10", "synthetic"],
        Field(
            description="CIFAR-10 (the original experiment's; read from DECAYLAB_DATA_DIR, or "
            "downloaded) or synthetic (deterministic, CIFAR-shaped, needs no files)."
        ),
    ] = "cifar10"
    train_size: Annotated[
        Annotated[int, Field(ge=1)] | None,
        Field(
            description="Train on the first N samples (empty: all, 50,000 for CIFAR-10 and "
            "for synthetic).",
        ),
        Integral,
    ] = None
    test_size: Annotated[
        Annotated[int, Field(ge=1)] | None,
        Field(
            description="Test on the first N samples (empty: all, 10,000 for CIFAR-10 and for "
            "synthetic)."
        ),
        Integral,
    ] = None
    seed: Annotated[
        int,
        Field(
            ge=SEED_MIN,
            lt=SEED_LIMIT,
            description="Seeds the model's initialisation and the shuffling (torch's range).",
        ),
        Integral,
    ] = 0
    basis: Annotated[
        Literal["previous", "next"],
        Field(
            description="w_ref in the constancy rule: previous (w_(e-1), the write-up's "
            "formula) or next (w_e, what np.isclose computed for the published figures)."
        ),
    ] = "previous"
    include_biases: Annotated[
        bool, Field(description="Also measure the bias vectors (listed, not averaged).")
    ] = False
    keep_snapshots: Annotated[
        bool,
        Field(description="Keep every epoch's weights for GET /runs/{id}/snapshots/{epoch}."),
    ] = False
    dtype: Annotated[
        Literal["float32", "float64"],
        Field(
            description="The precision of the weights, the optimizer state and the computation: "
            "float32 (the original experiment's) or float64 (whose ulp is 2^29 times finer: an "
            "update float32 rounds away moves a float64 weight). Constancy is judged in this dtype."
        ),
    ] = "float32"
    causes: Annotated[
        bool,
        Field(
            description="Also count why each exactly constant weight stayed constant (GET "
            "/runs/{id}/causes): no loss gradient all epoch (in a dead unit, or a dead pair) or "
            "every update rounded away. Costs about 4 % of a CPU epoch (an OR over every "
            "weight's gradient per batch), hence off by default."
        ),
    ] = False
    autocast: Annotated[
        Literal["bfloat16"] | None,
        Field(
            description="null (the original experiment's: none) or bfloat16: float32 master "
            "weights and optimizer, the forward pass's matmuls in bfloat16 (torch.autocast), as "
            "most GPU training runs today. Needs dtype float32."
        ),
    ] = None

    @property
    def precision(self) -> str:
        """What a run trained in, as people read it: float32, float64, float32 + bfloat16."""
        return self.dtype if self.autocast is None else f"{self.dtype} + {self.autocast} autocast"

    @model_validator(mode="after")
    def _autocast_float32(self) -> "RunSpec":
        # Autocast keeps float32 master weights; over float64 ones it would mean two precisions.
        if self.autocast is not None and self.dtype != "float32":
            raise ValueError(f"autocast {self.autocast} needs dtype float32, not {self.dtype}")
        return self


def _d(text: str) -> Any:
    """A field with only a description (the OpenAPI document shows it in /docs)."""
    return Field(description=text)


PERCENTS = "Per epoch: 100 x weights constant / weights in the layer, from exact counts"


class RunOut(BaseModel):
    """A run: its spec with every default filled in, and how far it got."""

    id: int = _d("The run's id; never handed out again, even after DELETE.")
    name: str | None = _d("The spec's name.")
    status: RunStatus = _d(
        "queued -> running -> succeeded | failed | cancelled; a running run goes back to queued "
        "when its worker stops (it resumes from its last finished epoch)."
    )
    spec: RunSpec = _d("The spec as submitted, every default filled in.")
    epochs_done: int = _d("Epochs finished and stored so far.")
    created_at: datetime = _d("When it was submitted (UTC).")
    started_at: datetime | None = _d("When a worker first started it (UTC).")
    finished_at: datetime | None = _d("When it succeeded, failed or was cancelled (UTC).")
    error: str | None = _d("What went wrong, for a failed run.")
    device: str | None = _d("Where it trained, e.g. cpu or cuda:0 (NVIDIA H100).")
    worker: str | None = _d("Host and pid of the worker that ran it last.")
    attempts: int = _d("How many times a worker claimed it (1 when it never lost its worker).")
    cancel_requested: bool = _d("A cancel is asked for and the worker has not stopped yet.")
    note: str | None = Field(
        default=None, description="Something worth knowing, e.g. that it restarted from epoch 0."
    )
    numerics: dict[str, Any] | None = Field(
        default=None,
        description="What the engine trained with (null until a worker starts the run): torch "
        "version, device, float32 matmul precision ('highest': fp32 stays fp32), whether "
        "deterministic algorithms were enforced, and the TF32 flags (false: no TF32).",
    )
    priority: int = Field(
        default=0, description="Claims take higher priorities first, then the oldest run."
    )
    sweep_id: int | None = Field(
        default=None, description="The sweep the run is a member of (GET /sweeps/{id})."
    )


class RunList(BaseModel):
    total: int = _d("Runs matching the filter, in all.")
    limit: int = _d("The page size asked for.")
    offset: int = _d("Runs skipped before this page.")
    runs: list[RunOut] = _d("This page, newest first.")


class MetricsOut(BaseModel):
    run_id: int = _d("The run.")
    epochs: list[int] = _d("Finished epochs, 1..epochs_done.")
    train_loss: list[float] = _d("Mean cross-entropy over the epoch's batches, per epoch.")
    train_accuracy: list[float] = _d("Share (0..1) of training samples classified right.")
    test_loss: list[float] = _d("Mean cross-entropy of batch_size batches of the test set.")
    test_accuracy: list[float] = _d("Share (0..1) of test samples classified right.")
    epoch_seconds: list[float] = _d("Wall-clock seconds each epoch took.")


class MeasuredTensor(BaseModel):
    """One of the tensors the engine measures, as every per-layer view names it."""

    index: int = _d("Position among the measured tensors, layer 0 (the input layer) first.")
    name: str = _d("The tensor's state_dict name, e.g. layers.0.weight.")
    parameters: int = _d("Weights in the tensor.")
    shape: list[int] = _d("The tensor's shape: [out, in] for a weight matrix, [out] for a bias.")


class LayerConstancy(MeasuredTensor):
    percent: list[float] = _d(PERCENTS + " (epoch e: the change from e-1 to e).")


AtOneTolerance = TypeVar("AtOneTolerance", bound=BaseModel)


class AtEveryTolerance(BaseModel, Generic[AtOneTolerance]):
    """A view at every tolerance it answers: a subclass names its view's keys first (its
    fields come before these in the JSON) and says in its docstring which tolerances."""

    tolerances: list[float] = _d("The tolerances answered, ascending.")
    results: list[AtOneTolerance] = _d("One view per tolerance, in that order.")


class _ConstancyKeys(BaseModel):
    run_id: int = _d("The run.")
    basis: str = _d("The spec's basis: w_ref is w_(e-1) (previous) or w_e (next).")


class ConstancyOut(_ConstancyKeys):
    tolerance: float = _d("The tolerance the percentages are at (one of the spec's).")
    epochs: list[int] = _d("Epochs measured, 1..epochs_done.")
    layers: list[LayerConstancy] = _d("Every measured tensor (biases too, with include_biases).")
    mean: list[float] = _d("Per epoch, the unweighted mean of the weight matrices' percent.")
    last_two_mean: list[float] = _d("Per epoch, the mean of the last two weight matrices.")


class ConstancyAllOut(AtEveryTolerance[ConstancyOut], _ConstancyKeys):
    """A run's constancy at each of its spec's tolerances."""


class CompareRun(BaseModel):
    run_id: int = _d("The run.")
    name: str | None = _d("The spec's name.")
    weight_decay: float = _d("The spec's weight decay.")
    basis: str = _d(
        "The spec's basis (previous or next): runs of different bases are not measured alike."
    )
    precision: str = _d(
        "What the run trained in: float32, float64 or float32 + bfloat16 autocast. Runs of "
        "different precision are not measured alike (float32 rounds small updates away)."
    )
    epochs: list[int] = _d("Epochs measured.")
    percent: list[float] = _d(PERCENTS + ", for the scope asked for.")


class _CompareKeys(BaseModel):
    scope: str = _d("all (mean of all layers), last2 (of the last two) or a layer index.")


class CompareOut(_CompareKeys):
    tolerance: float = _d("The tolerance compared.")
    runs: list[CompareRun] = _d("One entry per run, in the order asked for.")


class CompareAllOut(AtEveryTolerance[CompareOut], _CompareKeys):
    """The runs compared at every tolerance all of them computed."""


class LayerWeightStats(MeasuredTensor):
    variance: list[float] = _d("Variance of the tensor's values per epoch, epoch 0 first.")


class WeightStatsOut(BaseModel):
    """Each measured layer's weight variance per epoch; epoch 0 is the initial weights."""

    run_id: int = _d("The run.")
    epochs: list[int] = _d("0 (the initial weights), then 1..epochs_done.")
    layers: list[LayerWeightStats] = _d("Every measured tensor, layer 0 first.")


class HealthOut(BaseModel):
    status: Literal["ok"] = _d("Always ok: the database answers.")


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` says what is wrong (422s keep FastAPI's list form)."""

    detail: str = _d("What is wrong, and what to change.")


# --- the mechanism: dead units and the movement spectrum ---


class HiddenUnits(BaseModel):
    """Hidden layer ``layer`` (the ReLU after Linear ``layer``): per epoch, how many of its
    ``units`` never fired for a training sample of that epoch, and which."""

    layer: int = _d("The hidden layer: the ReLU after Linear layer `layer` (0 first).")
    units: int = _d("Its units (the spec's hidden size).")
    dead: list[int] = _d("Per epoch: how many of its units never fired for a training sample.")
    dead_units: list[list[int]] = _d("Per epoch: which units never fired, ascending.")


class WeightUnits(BaseModel):
    """Weight matrix ``layer`` from epoch e-1 to e: its weights exactly unchanged
    (``constant``) and how many of those lie in a dead unit's incoming row or outgoing column
    (``explained``; each weight once)."""

    layer: int = _d("The weight matrix: Linear layer `layer` (0 first).")
    name: str = _d("Its state_dict name, e.g. layers.0.weight.")
    parameters: int = _d("Its weights.")
    constant: list[int] = _d("Per epoch: its weights exactly unchanged since the epoch before.")
    explained: list[int] = _d(
        "Per epoch: of those, how many lie in a dead unit's incoming row or outgoing column."
    )


class UnitsOut(BaseModel):
    """Dead units per hidden layer and how much of the exact constancy they explain."""

    run_id: int = _d("The run.")
    epochs: list[int] = _d("The epochs stored so far (1..E).")
    hidden: list[HiddenUnits] = _d("Each hidden layer's dead units per epoch.")
    weights: list[WeightUnits] = _d("Each weight matrix's unchanged and explained weights.")


class LayerSpectrum(BaseModel):
    """One measured tensor's movement spectrum."""

    index: int = _d("The tensor's position among the measured tensors (layer order).")
    name: str = _d("Its state_dict name, e.g. layers.0.weight.")
    parameters: int = _d("Its weights.")
    percent: list[list[float]] = _d(
        "percent[epoch position][tolerance position]: % of its weights constant, from exact counts."
    )


class SpectrumOut(BaseModel):
    """% of each layer's weights constant from epoch e-1 to e at every tolerance of the
    spectrum's ladder (the same for every run), with the run's basis."""

    run_id: int = _d("The run.")
    basis: str = _d("The run's basis (previous or next), as for its own tolerances.")
    epochs: list[int] = _d("The epochs stored so far (1..E).")
    tolerances: list[float] = _d("The ladder: 0, then log-spaced from 1e-7 to 1.")
    layers: list[LayerSpectrum] = _d("Each measured tensor's spectrum.")


class CompareSpectrumRun(SpectrumOut):
    """One run's spectrum in a comparison, named."""

    name: str | None = _d("The run's name.")
    weight_decay: float = _d("The run's weight decay.")


class CompareSpectrumOut(BaseModel):
    """The runs' spectra side by side, in the order asked for."""

    runs: list[CompareSpectrumRun] = _d("One spectrum per run, in the order of `runs`.")


# --- sweeps (server/views/sweeps.py, server/api/routers/sweeps.py) ---

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

    priority: Annotated[Priority, Integral]


# What a sweep may vary and state: every spec field but the name (members are named after their
# grid values; a grid over names would say nothing).
NOT_IN_GRID = frozenset({"name"})
SPEC_FIELDS = tuple(RunSpec.model_fields)
GRID_FIELDS = tuple(f for f in SPEC_FIELDS if f not in NOT_IN_GRID)


class SweepBase(RunSpec):
    """The run spec every member starts from: any of RunSpec's fields, each validated for what
    it states even where the grid overrides it. The rules across fields (CIFAR-10's sizes, the
    resource limits) apply to each member, whose spec is the base with its grid values."""

    # RunSpec's fields, types and rules; not its if/else on dataset: a grid may vary it.
    model_config = ConfigDict(json_schema_extra=None)


def _grid_item(info: FieldInfo) -> Any:
    """A grid value's type: the spec field's, with its bounds, rules and description."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else None
    return Annotated[
        info.annotation,  # type: ignore[name-defined]
        Field(description=info.description, json_schema_extra=extra),
        *info.metadata,
    ]


def _no_defaults(schema: dict[str, Any]) -> None:
    # A grid field left out is not varied; stated, it is a list (null is no list of values).
    for rule in schema["properties"].values():
        rule.pop("default", None)


class _GridOrder(BaseModel):
    """A grid keeps the order its fields were given in: the last one varies fastest."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_no_defaults)
    _order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        grid = handler(data)
        grid._order = [f for f in data if f in grid.model_fields_set]
        return grid

    def fields(self) -> dict[str, list[Any]]:
        """The grid's fields and their (validated) values, in the order given."""
        return {field: getattr(self, field) for field in self._order}


SweepGrid = create_model(
    "SweepGrid",
    __base__=_GridOrder,
    __doc__="A spec field → the values it takes: a non-empty list of distinct values of the "
    "field's own schema. The members are the cartesian product of the fields' values, the last "
    "field varying fastest; their number is at most DECAYLAB_MAX_SWEEP_RUNS.",
    **{
        name: (
            list[_grid_item(info)],
            Field(
                default=None,
                min_length=1,
                title=info.title,
                description=f"Values of the run spec's {name}, distinct.",
                json_schema_extra={"uniqueItems": True},
            ),
        )
        for name, info in RunSpec.model_fields.items()
        if name in GRID_FIELDS
    },
)


class SweepIn(BaseModel):
    """A grid of runs: ``base`` (a partial run spec) expanded over the cartesian product of
    ``grid`` (a spec field → its values), the last field varying fastest. Validated as a whole
    (server/views/sweeps.py ``admit``): one 422 names every wrong value of the body, including
    each member's spec (RunSpec's rules, CIFAR-10's sizes) and the resource limits."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [EXAMPLE_SWEEP]}
    )

    name: Annotated[
        str | None, Field(max_length=200, description="A label for people, no NUL."), NoNul
    ] = None
    base: Annotated[
        SweepBase,
        Field(
            description="The run spec every member starts from (any of its fields; the rest "
            "take RunSpec's defaults). Each field it states is validated, even one the grid "
            "overrides."
        ),
    ] = Field(default_factory=SweepBase)
    grid: Annotated[
        SweepGrid,  # type: ignore[valid-type]
        Field(
            description="Spec field → the values it takes, e.g. seed: [0, 1, 2]; at least one "
            "field, at most DECAYLAB_MAX_SWEEP_RUNS members.",
            json_schema_extra={"minProperties": 1},
        ),
    ]
    priority: Annotated[Priority, Integral] = 0

    @field_validator("grid")
    @classmethod
    def _some_field(cls, grid: Any) -> Any:
        if not grid.fields():
            raise ValueError("a grid varies at least one field")
        return grid

    def base_fields(self) -> dict[str, Any]:
        """The base as stated (JSON values), without the defaults it did not state."""
        return self.base.model_dump(mode="json", exclude_unset=True)

    def grid_fields(self) -> dict[str, list[Any]]:
        """The grid in the order given, each value as its field validated it."""
        return self.grid.fields()


class SweepProgress(BaseModel):
    """How far a sweep's members got."""

    runs: int = _d("Members.")
    by_status: dict[str, int] = _d("Members per status.")
    epochs_done: int = _d("Epochs stored, over all members.")
    epochs_total: int = _d("Epochs asked for, over all members.")


class SweepBrief(BaseModel):
    """A sweep without its members."""

    id: int = _d("The sweep's id.")
    name: str | None = _d("A label for people.")
    base: dict[str, Any] = _d("The run spec every member starts from (as submitted).")
    grid: dict[str, list[Any]] = _d("Spec field → the values it takes, in grid order.")
    priority: int = _d("The members' claim priority when submitted.")
    created_at: datetime = _d("When it was submitted (UTC).")
    status: RunStatus = _d(
        "Derived from the members' when read: queued (all queued), running (any running, or "
        "some queued and some finished), else failed (any failed), cancelled (any), succeeded."
    )
    progress: SweepProgress = _d("How far the members got.")


class SweepOut(SweepBrief):
    """A sweep with its member runs."""

    runs: list[RunOut] = _d("The member runs in grid order (the last grid field fastest).")


class SweepList(BaseModel):
    """A page of sweeps, newest first."""

    total: int = _d("Sweeps in all.")
    limit: int = _d("The page size asked for.")
    offset: int = _d("Sweeps skipped before this page.")
    sweeps: list[SweepBrief] = _d("This page's sweeps, without their members.")


GROUP_VALUES = "The grid values the group's runs share (the `by` fields)."
GROUP_RUNS = "The group's runs."
GROUP_N = "How many runs the group has."
GROUP_EPOCHS = "The epochs every run of the group has stored."
CI = "95% interval: mean ∓ t(0.975, n−1)·sd/√n (null when n = 1)."


class GroupSeries(BaseModel):
    """A group of runs (the members that share ``values``) at each epoch they all have: the
    mean over its runs and the 95% interval mean ∓ t(0.975, n−1)·sd/√n (null when n = 1)."""

    values: dict[str, Any] = _d(GROUP_VALUES)
    run_ids: list[int] = _d(GROUP_RUNS)
    n: int = _d(GROUP_N)
    epochs: list[int] = _d(GROUP_EPOCHS)
    mean: list[float] = _d("Per epoch: the mean over the runs of their scoped % constant.")
    ci_low: list[float] | None = _d("Per epoch: the interval's low end. " + CI)
    ci_high: list[float] | None = _d("Per epoch: the interval's high end. " + CI)


class _SweepConstancyKeys(BaseModel):
    sweep_id: int = _d("The sweep.")
    scope: str = _d("all, last2 or a layer index.")
    by: list[str] = _d("The grid fields that define a group.")


class SweepConstancyOut(_SweepConstancyKeys):
    """A sweep's groups at one tolerance."""

    tolerance: float = _d("The tolerance.")
    groups: list[GroupSeries] = _d("One entry per group.")


class SweepConstancyAllOut(AtEveryTolerance[SweepConstancyOut], _SweepConstancyKeys):
    """A sweep's groups at every tolerance its members share."""


class SeriesStats(BaseModel):
    """A metric's mean over a group's runs per epoch, with its interval."""

    mean: list[float] = _d("Per epoch: the mean over the group's runs.")
    ci_low: list[float] | None = _d("Per epoch: the interval's low end. " + CI)
    ci_high: list[float] | None = _d("Per epoch: the interval's high end. " + CI)


class GroupMetrics(BaseModel):
    """A group's training metrics per epoch."""

    values: dict[str, Any] = _d(GROUP_VALUES)
    run_ids: list[int] = _d(GROUP_RUNS)
    n: int = _d(GROUP_N)
    epochs: list[int] = _d(GROUP_EPOCHS)
    train_loss: SeriesStats = _d("Mean of the epoch's training batch losses.")
    train_accuracy: SeriesStats = _d("Share of training samples classified right (0..1).")
    test_loss: SeriesStats = _d("Mean of the test batches' losses.")
    test_accuracy: SeriesStats = _d("Share of test samples classified right (0..1).")


class SweepMetricsOut(BaseModel):
    """A sweep's groups' training metrics."""

    sweep_id: int = _d("The sweep.")
    by: list[str] = _d("The grid fields that define a group.")
    groups: list[GroupMetrics] = _d("One entry per group.")


class GroupPoint(BaseModel):
    """A group's value at one epoch."""

    values: dict[str, Any] = _d(GROUP_VALUES)
    run_ids: list[int] = _d(GROUP_RUNS)
    n: int = _d(GROUP_N)
    mean: float = _d("The mean over the group's runs of their scoped % constant.")
    sd: float | None = _d("The sample standard deviation (n−1; null when n = 1).")
    ci_low: float | None = _d("The interval's low end. " + CI)
    ci_high: float | None = _d("The interval's high end. " + CI)


class SummaryLine(BaseModel):
    """One line of the dose-response figure: a scope's points, one per group."""

    scope: str = _d("all, last2 or a layer index.")
    points: list[GroupPoint] = _d("One point per group.")


class SummaryAtTolerance(BaseModel):
    """The dose-response lines at one tolerance (one panel of the figure)."""

    tolerance: float = _d("The tolerance.")
    lines: list[SummaryLine] = _d("One line per scope.")


class SweepSummaryOut(BaseModel):
    """Dose-response: every group's value at one epoch, per tolerance and scope."""

    sweep_id: int = _d("The sweep.")
    epoch: int = _d("The epoch summarised (default: the last every member has).")
    by: list[str] = _d("The grid fields that define a group.")
    x: str | None = _d(
        "The numeric field of `by` the figure puts on its x axis (null: none is numeric)."
    )
    tolerances: list[float] = _d("The tolerances, ascending.")
    results: list[SummaryAtTolerance] = _d("One entry per tolerance.")


class GroupRef(BaseModel):
    """A group named in a difference."""

    index: int = _d("The group's position in the sweep's groups.")
    values: dict[str, Any] = _d(GROUP_VALUES)
    run_ids: list[int] = _d(GROUP_RUNS)
    n: int = _d(GROUP_N)


class SweepDifferenceOut(BaseModel):
    """Group b minus group a per epoch with its 95% interval: Welch's (unequal variances,
    Welch–Satterthwaite df) or paired (runs matched by their other grid values, e.g. seed)."""

    sweep_id: int = _d("The sweep.")
    tolerance: float = _d("The tolerance.")
    scope: str = _d("all, last2 or a layer index.")
    method: Literal["welch", "paired"] = _d(
        "welch: unequal variances, Welch–Satterthwaite df; paired: runs matched by their other "
        "grid values (e.g. seed)."
    )
    a: GroupRef = _d("The group subtracted.")
    b: GroupRef = _d("The group it is subtracted from.")
    pairs: list[list[int]] | None = _d("paired: the matched run ids [a, b]; welch: null.")
    epochs: list[int] = _d("The epochs both groups have.")
    difference: list[float] = _d("Per epoch: mean of b minus mean of a, in percentage points.")
    ci_low: list[float] | None = _d("Per epoch: the interval's low end (null without one).")
    ci_high: list[float] | None = _d("Per epoch: the interval's high end (null without one).")
    df: list[float] | None = _d("Per epoch: the t distribution's degrees of freedom.")


# --- the write-up's claims re-checked (server/views/reproduction.py) ---

Verdict = Literal["holds", "fails", "inconclusive"]
Rule = Literal["within", "lower", "higher"]


class ClaimCheck(BaseModel):
    """One claim of the write-up: its published value, the measured mean over the seeds with its
    95% interval, and the verdict of its ``rule``."""

    id: str = _d("A stable name, e.g. tol0.layer1 or metrics.wd0.test_loss.")
    section: str = _d("The group of claims it belongs to, as the report's headings.")
    claim: str = _d("What the write-up says.")
    measure: str = _d("What was measured, over the runs of each seed.")
    unit: str = _d("% (of weights or samples), pp (percentage points), epoch, or '' (a loss).")
    published: str = _d("The published value, as the write-up gives it.")
    rule: Rule = _d(
        "within: the band [band_low, band_high]; lower/higher: the paired difference (decay "
        "minus no decay, or a later minus an earlier epoch) is below/above 0."
    )
    band_low: float | None = _d("within: the band's low end (null: unbounded).")
    band_high: float | None = _d("within: the band's high end (null: unbounded).")
    run_ids: list[int] = _d("The runs measured (both runs of each pair for a difference).")
    n: int = _d("Seeds: runs (or pairs of runs) averaged.")
    mean: float = _d("The mean over the seeds.")
    ci_low: float | None = _d("The 95% interval's low end. " + CI)
    ci_high: float | None = _d("The 95% interval's high end. " + CI)
    verdict: Verdict = _d("holds, fails or inconclusive, by the rule (see `rules`).")


class ReproductionSetup(BaseModel):
    """What the sweep ran: the facts a verdict depends on."""

    dataset: str = _d("cifar10 or synthetic (a stand-in).")
    train_size: int = _d("Training samples.")
    test_size: int = _d("Test samples.")
    epochs: int = _d("Epochs per run; its last epoch stands for the write-up's epoch 50.")
    seeds: list[int] = _d("The seeds, one run per seed and weight decay.")
    hidden_sizes: list[int] = _d("The hidden layers (the original: 512, 512, 512).")
    basis: str = _d("The constancy rule's reference weight (previous or next).")
    precision: list[str] = _d("The arithmetic the runs trained with (from their numerics).")
    deviations: list[str] = _d("Each way the sweep differs from the original experiment.")
    stand_in: bool = _d("True unless the runs trained on the whole of CIFAR-10.")


class ReproductionFigure(BaseModel):
    """A figure of the report: a sweep view's PNG."""

    file: str = _d("The file name the report refers to (decaylab reproduce writes it).")
    caption: str = _d("What it shows.")
    url: str = _d("The view that draws it (a path with its query, format=png).")


class ReproductionOut(BaseModel):
    """The write-up's claims re-checked on a finished sweep of weight decay 0 and 0.001 × seeds."""

    sweep_id: int = _d("The sweep.")
    setup: ReproductionSetup = _d("What the runs trained on and with.")
    caveat: str = _d("What the verdicts are verdicts on.")
    rules: dict[str, str] = _d("Each rule and each verdict, in words.")
    claims: list[ClaimCheck] = _d("Every claim, in the report's order.")
    verdicts: dict[str, int] = _d("How many claims hold, fail and are inconclusive.")
    figures: list[ReproductionFigure] = _d("The report's figures.")
