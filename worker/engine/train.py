"""The engine's entry point: a run spec in, one result per epoch out; resumable, cancellable."""

import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from server.schemas import RunSpec
from worker.engine.checkpoint import (
    checkpoint_path,
    clear_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_snapshot,
)
from worker.engine.constancy import ConstancyMeter
from worker.engine.data import load_dataset
from worker.engine.dataset import Split
from worker.engine.devices import describe, resolve_device
from worker.engine.model import build_model


class TrainingStopped(Exception):
    """should_stop() returned True at a batch boundary; the last epoch's checkpoint stays."""


class TrainingDiverged(Exception):
    """A loss or weight statistic stopped being finite: the run's numbers mean nothing from here."""


class CheckpointMissing(Exception):
    """No usable checkpoint for the requested start epoch (the message says where it looked)."""


@dataclass(frozen=True)
class TensorInfo:
    index: int  # 0.. : the Linear weights in layer order, then (include_biases) their biases
    name: str  # state_dict key, e.g. "layers.0.weight"
    parameters: int


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1..E
    train_loss: float  # mean of the epoch's batch losses
    train_accuracy: float  # share of training samples classified right while training
    test_loss: float  # mean of the test batches' losses
    test_accuracy: float
    epoch_seconds: float  # training, test pass, constancy, checkpoint and snapshot
    counts: list[list[int]]  # counts[tensor index][tolerance index]
    variances: list[float]  # each measured tensor's weight variance (ddof 0) after the epoch


def make_optimizer(spec: RunSpec, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The spec's optimizer; weight_decay is the optimizer's own (coupled L2 for sgd and adam)."""
    # fused: one kernel updates all parameters (the default loops over them on CPU).
    if spec.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec.learning_rate,
            momentum=spec.momentum,
            weight_decay=spec.weight_decay,
            fused=True,
        )
    # Adam's first-moment decay plays momentum's part (0.9, the seed's momentum, is its default).
    adam = torch.optim.Adam if spec.optimizer == "adam" else torch.optim.AdamW
    return adam(
        params,
        lr=spec.learning_rate,
        betas=(spec.momentum, 0.999),
        weight_decay=spec.weight_decay,
        fused=True,
    )


def _spec_key(spec: RunSpec) -> dict[str, Any]:
    """What a checkpoint must have been written for (the name may change; results may not)."""
    return spec.model_dump(mode="json", exclude={"name"})


class Training:
    """One run: ``epochs()`` yields each epoch's result once its checkpoint is on disk.

    After ``TrainingStopped`` (or any error) the object is spent; resume with a new one from the
    last checkpoint (``start_epoch``).
    """

    def __init__(
        self,
        spec: RunSpec,
        *,
        run_dir: Path,
        data_dir: Path,
        device: str = "auto",
        allow_download: bool = True,
        start_epoch: int = 0,
    ) -> None:
        if not 0 <= start_epoch <= spec.epochs:
            raise ValueError(f"start_epoch {start_epoch} is outside 0..{spec.epochs}")
        self.spec = spec
        self.run_dir = Path(run_dir)
        self._device = resolve_device(device)
        self.device = describe(self._device)
        # Checked before the data loads: a worker falls back to epoch 0 when this fails.
        checkpoint = self._load_checkpoint(start_epoch) if start_epoch else None
        data = load_dataset(
            spec.dataset,
            data_dir=Path(data_dir),
            allow_download=allow_download,
            train_size=spec.train_size,
            test_size=spec.test_size,
        )
        # On CUDA the whole dataset lives on the GPU as uint8; batches are gathered by index.
        self._train, self._test = data.train.to(self._device), data.test.to(self._device)
        self._model = build_model(spec.hidden_sizes, spec.seed).to(self._device)
        self._optimizer = make_optimizer(spec, self._model.parameters())
        self._shuffle = torch.Generator(device=self._device)
        self._shuffle.manual_seed(spec.seed)

        layers = range(len(self._model.layers))
        names = [f"layers.{i}.weight" for i in layers]
        if spec.include_biases:
            names += [f"layers.{i}.bias" for i in layers]
        params = dict(self._model.named_parameters())
        self._measured = [params[name] for name in names]
        self.tensors = [
            TensorInfo(index=i, name=name, parameters=params[name].numel())
            for i, name in enumerate(names)
        ]
        self._epoch = start_epoch
        if checkpoint is None:
            self.initial_variances: list[float] = self._variances().tolist()
        else:
            self._model.load_state_dict(checkpoint["model"])
            self._optimizer.load_state_dict(checkpoint["optimizer"])
            self._shuffle.set_state(checkpoint["shuffle_rng"])
            self.initial_variances = list(checkpoint["initial_variances"])
        self._meter = ConstancyMeter(
            self._measured,
            spec.tolerances,
            spec.basis,
            chunk=1 << 18 if self._device.type == "cuda" else 1 << 16,
        )

    def epochs(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[EpochResult]:
        """Epochs start_epoch+1 .. spec.epochs; ``should_stop`` is polled between batches."""
        if self._epoch == 0:
            # Left over from an attempt that started earlier: never to be resumed from now.
            clear_checkpoints(self.run_dir)
            if self.spec.keep_snapshots:
                save_snapshot(self.run_dir, 0, self._model.state_dict())
        while self._epoch < self.spec.epochs:
            started = time.perf_counter()
            epoch = self._epoch + 1
            stats_on_device, counts = self._device_epoch(should_stop)
            # The epoch's one wait for the device.
            stats = stats_on_device.tolist()
            if not all(math.isfinite(x) for x in stats):
                raise TrainingDiverged(
                    f"epoch {epoch}: train loss {stats[0]}, test loss {stats[2]}, weight variances"
                    f" {stats[4:]} are not all finite; try a smaller learning_rate"
                )
            counts_list = counts.tolist()
            self._save(epoch)
            self._epoch = epoch
            yield EpochResult(
                epoch=epoch,
                train_loss=stats[0],
                train_accuracy=stats[1],
                test_loss=stats[2],
                test_accuracy=stats[3],
                epoch_seconds=time.perf_counter() - started,
                counts=counts_list,
                variances=stats[4:],
            )

    def _device_epoch(self, should_stop: Callable[[], bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Queue an epoch's work without waiting for the device: [train loss, train accuracy,
        test loss, test accuracy, *variances] (float64) and the constancy counts."""
        train = self._run_split(self._train, should_stop, training=True)
        test = self._run_split(self._test, should_stop, training=False)
        counts = self._meter.measure(self._measured)
        return torch.cat([train, test, self._variances()]), counts

    def _run_split(
        self, split: Split, should_stop: Callable[[], bool], *, training: bool
    ) -> torch.Tensor:
        """One pass over a split: [mean batch loss, accuracy] as a float64 device tensor."""
        size, batch_size = len(split), self.spec.batch_size
        loss_sum = torch.zeros((), dtype=torch.float64, device=self._device)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        if training:
            order = torch.randperm(size, generator=self._shuffle, device=self._device)
        self._model.train(training)
        with torch.set_grad_enabled(training):
            for start in range(0, size, batch_size):
                if should_stop():
                    raise TrainingStopped(f"stopped during epoch {self._epoch + 1}")
                if training:
                    index = order[start : start + batch_size]
                    images = split.images.index_select(0, index)
                    labels = split.labels.index_select(0, index)
                else:
                    images = split.images[start : start + batch_size]
                    labels = split.labels[start : start + batch_size]
                # Pixels to [0, 1] exactly as torchvision's ToTensor does.
                logits = self._model(images.float().div_(255))
                loss = F.cross_entropy(logits, labels)
                if training:
                    self._optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self._optimizer.step()
                loss_sum += loss.detach()
                correct += (logits.argmax(1) == labels).sum()
        batches = -(-size // batch_size)
        return torch.stack([loss_sum / batches, correct.double() / size])

    def _variances(self) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([p.var(correction=0) for p in self._measured]).double()

    def _save(self, epoch: int) -> None:
        save_checkpoint(
            self.run_dir,
            epoch,
            {
                "epoch": epoch,
                "spec": _spec_key(self.spec),
                "device_type": self._device.type,
                "initial_variances": self.initial_variances,
                "model": self._model.state_dict(),
                "optimizer": self._optimizer.state_dict(),
                "shuffle_rng": self._shuffle.get_state(),
                # The constancy snapshot is not stored apart: after an epoch it *is* the model's
                # weights, and the meter re-takes it from them on resume.
            },
        )
        if self.spec.keep_snapshots:
            save_snapshot(self.run_dir, epoch, self._model.state_dict())

    def _load_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The state saved after ``epoch``, if it is this run's and usable on this device."""
        path = checkpoint_path(self.run_dir, epoch)
        try:
            state = load_checkpoint(self.run_dir, epoch)
        except FileNotFoundError as exc:
            raise CheckpointMissing(f"no checkpoint of epoch {epoch}: {path} not found") from exc
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            raise CheckpointMissing(f"checkpoint {path} is unreadable: {exc}") from exc
        if state.get("epoch") != epoch or state.get("spec") != _spec_key(self.spec):
            raise CheckpointMissing(f"checkpoint {path} belongs to another run spec or epoch")
        if state.get("device_type") != self._device.type:
            raise CheckpointMissing(
                f"checkpoint {path} was written on {state.get('device_type')}; resuming on "
                f"{self._device.type} would not reproduce the run"
            )
        return state
