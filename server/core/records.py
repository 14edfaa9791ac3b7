"""What the engine yields: the tensors it measures and one record per finished epoch.

The engine owns these types; the job protocol (server/store/jobs.py) stores what they hold.
They live below both so that the engine never imports the job protocol."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorInfo:
    """A measured tensor: the Linear weights in layer order, then (include_biases) biases."""

    index: int
    name: str  # state_dict key, e.g. "layers.0.weight"
    parameters: int


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch, as the engine yields it and ``record_epoch`` stores it."""

    epoch: int  # 1..E
    train_loss: float  # mean of the epoch's batch losses
    train_accuracy: float  # share of training samples classified right while training
    test_loss: float  # mean of the test batches' losses
    test_accuracy: float
    epoch_seconds: float  # training, test pass, constancy, checkpoint and snapshot
    counts: list[list[int]]  # counts[tensor index][tolerance index]
    variances: list[float]  # each measured tensor's weight variance (ddof 0) after the epoch
    # The mechanism (empty from engines that do not measure it; then nothing is stored):
    # counts at the spectrum's ladder, spectrum[tensor index][ladder index] (same kernel, basis);
    spectrum: list[list[int]] = field(default_factory=list)
    # per hidden layer (the ReLU after Linear i), the units that never fired this epoch;
    dead_units: list[list[int]] = field(default_factory=list)
    # per weight matrix, its weights exactly unchanged since the previous epoch, and how many of
    # those lie in a dead unit's incoming row or outgoing column (each weight counted once).
    unchanged: list[int] = field(default_factory=list)
    explained: list[int] = field(default_factory=list)
    # The causes: per weight matrix, its unchanged weights whose loss gradient was exactly 0 in
    # every batch of the epoch (the rest of the unchanged, ``rounded``, got a non-zero gradient
    # and still ended the epoch bit-identical). ``explained`` <= ``no_gradient`` <= ``unchanged``:
    # a dead unit passes no gradient to its row or column.
    no_gradient: list[int] = field(default_factory=list)
