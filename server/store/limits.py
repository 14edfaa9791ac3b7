"""What a run spec will cost before it is stored: parameters, device memory and disk.

The API refuses a spec beyond the configured limits with 422 (``violations``) instead of letting
a worker run out of memory or fill its disk. The estimates are upper bounds in the run's dtype
(float64 weights, optimizer state, activations and files take twice float32's bytes; pixels stay
uint8), from the experiment's facts (server/core/experiment.py) and a run's file layout
(server/core/runfiles.py), which the engine uses too.
"""

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from server.core.experiment import (
    DATASET_SIZES,
    IN_FEATURES,
    TEST_PASS_SAMPLES,
    dataset_sizes,
    layer_sizes,
)
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from server.core.settings import Settings

# The 422 error types of the rules across a spec's fields (documented in server/api/contract.py).
RESOURCE_LIMIT = "resource_limit"
DATASET_SIZE = "dataset_size"
FLOAT_BYTES = {"float32": 4, "float64": 8}
# bfloat16 autocast: a bfloat16 copy of the weights beside the float32 master weights.
AUTOCAST_BYTES = 2
# A sample on the device: uint8 pixels and an int64 label.
SAMPLE_BYTES = IN_FEATURES + 8


@dataclass(frozen=True)
class Estimate:
    parameters: int
    # Device memory by what causes it: the spec field to change to bring it down.
    memory: dict[str, int]
    # Files under the run's directory (or its prefix in the bucket: the same files, and at most
    # CHECKPOINTS_ON_DISK checkpoints there too) by the spec field that causes them.
    disk: dict[str, int]

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory.values())

    @property
    def disk_bytes(self) -> int:
        return sum(self.disk.values())


def parameter_count(hidden_sizes: list[int]) -> int:
    """Weights and biases of the MLP 3072 -> hidden_sizes... -> 10."""
    return sum(a * b + b for a, b in pairwise(layer_sizes(hidden_sizes)))


def optimizer_slots(spec: RunSpec) -> int:
    """Tensors of the model's size the optimizer keeps (SGD without momentum keeps none)."""
    if spec.optimizer == "sgd":
        return 1 if spec.momentum > 0 else 0
    return 2  # Adam and AdamW: first and second moments


def estimate(spec: RunSpec) -> Estimate:
    params = parameter_count(spec.hidden_sizes)
    weights = sum(a * b for a, b in pairwise(layer_sizes(spec.hidden_sizes)))
    measured = params if spec.include_biases else weights
    float_bytes = FLOAT_BYTES[spec.dtype]
    model = params * float_bytes
    train, test = dataset_sizes(spec.dataset, spec.train_size, spec.test_size)
    # Per sample of a batch: the float input, each hidden layer's output before and after ReLU
    # and the logits, and as much again for their gradients.
    activations = sum(layer_sizes(spec.hidden_sizes)) + sum(spec.hidden_sizes)
    checkpoint = model * (1 + optimizer_slots(spec))
    disk = {"hidden_sizes": RunFiles.CHECKPOINTS_ON_DISK * checkpoint}
    if spec.keep_snapshots:
        disk["keep_snapshots"] = (spec.epochs + 1) * model  # epochs 0..E
    return Estimate(
        parameters=params,
        memory={
            # Weights, gradients, optimizer state, the constancy meter's copy, per weight of
            # the weight matrices a bool mask (in a dead unit) and with causes the gradient
            # bits (the dtype's width) and a second mask, with autocast a bfloat16 weight copy.
            "hidden_sizes": model * (2 + optimizer_slots(spec))
            + measured * float_bytes
            + weights * (1 + (float_bytes + 1 if spec.causes else 0))
            + (params * AUTOCAST_BYTES if spec.autocast else 0),
            "train_size": train * SAMPLE_BYTES,
            # The test split, each test sample's loss, and one test pass's activations.
            "test_size": test * (SAMPLE_BYTES + float_bytes)
            + min(test, TEST_PASS_SAMPLES) * activations * float_bytes,
            "batch_size": 2 * spec.batch_size * activations * float_bytes,
        },
        disk=disk,
    )


def violations(spec: RunSpec, settings: Settings) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's 422 shape) for every limit ``spec`` exceeds; [] if none."""
    errors: list[dict[str, Any]] = []

    def refuse(field: str, what: str, value: int, limit: int, setting: str) -> None:
        errors.append(
            {
                "type": RESOURCE_LIMIT,
                "loc": ["body", field],
                "msg": f"{what} {value:,} exceeds the limit {limit:,} (DECAYLAB_{setting})",
                "input": getattr(spec, field),
                "ctx": {"estimate": value, "limit": limit, "setting": f"DECAYLAB_{setting}"},
            }
        )

    if spec.dataset == "cifar10":
        sizes = zip(("train_size", "test_size"), DATASET_SIZES["cifar10"], strict=True)
        for field, available in sizes:
            requested = getattr(spec, field)
            if requested is not None and requested > available:
                errors.append(
                    {
                        "type": DATASET_SIZE,
                        "loc": ["body", field],
                        "msg": f"CIFAR-10 has {available:,} samples for {field}",
                        "input": requested,
                        "ctx": {"le": available},
                    }
                )
    cost = estimate(spec)
    if cost.parameters > settings.max_parameters:
        refuse(
            "hidden_sizes", "parameters", cost.parameters, settings.max_parameters, "MAX_PARAMETERS"
        )
    if cost.memory_bytes > settings.max_memory_bytes:
        field = max(cost.memory, key=cost.memory.__getitem__)
        refuse(
            field,
            "estimated memory (bytes)",
            cost.memory_bytes,
            settings.max_memory_bytes,
            "MAX_MEMORY_BYTES",
        )
    if cost.disk_bytes > settings.max_run_disk_bytes:
        field = max(cost.disk, key=cost.disk.__getitem__)
        refuse(
            field,
            "estimated run files (bytes)",
            cost.disk_bytes,
            settings.max_run_disk_bytes,
            "MAX_RUN_DISK_BYTES",
        )
    return errors
