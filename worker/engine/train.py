"""The engine's entry point: a run spec in, one record per epoch out; resumable, cancellable."""

import contextlib
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from server.core.experiment import (
    CLASSES,
    IN_FEATURES,
    SPECTRUM_TOLERANCES,
    TEST_PASS_SAMPLES,
    tensor_names,
)
from server.core.records import EpochRecord, TensorInfo
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from worker.engine.checkpoint import load_checkpoint, save_checkpoint, save_snapshot
from worker.engine.constancy import ConstancyMeter
from worker.engine.data import load_dataset
from worker.engine.devices import describe, exact_numerics, resolve_device, torch_dtype
from worker.engine.model import build_model


class TrainingStopped(Exception):
    """should_stop() returned True at a batch boundary; the last epoch's checkpoint stays."""


class TrainingDiverged(Exception):
    """A loss or weight statistic stopped being finite: the run's numbers mean nothing from here."""


@dataclass(frozen=True)
class Start:
    """Where a claimed run starts: after ``epoch`` from ``state``, or afresh at epoch 0."""

    epoch: int
    state: dict[str, Any] | None = None  # the checkpoint of ``epoch`` (None at epoch 0)
    # Why a run that had stored epochs starts again from 0 (its checkpoint's problem).
    restarted_because: str | None = None


def resume_point(spec: RunSpec, files: RunFiles, epochs_done: int, device: torch.device) -> Start:
    """The one place that decides where a claimed run starts: after its last stored epoch when
    that epoch's checkpoint is this run's and usable on ``device``, else at epoch 0.

    A fresh start forgets the checkpoints an earlier attempt left (never to be resumed from)."""
    problem = None
    if epochs_done:
        path = files.where(files.checkpoint(epochs_done))
        try:
            state = load_checkpoint(files, epochs_done)
        except FileNotFoundError:
            problem = f"no checkpoint of epoch {epochs_done}: {path} not found"
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
            problem = f"checkpoint {path} is unreadable: {exc}"
        else:
            if state.get("epoch") != epochs_done or state.get("spec") != _spec_key(spec):
                problem = f"checkpoint {path} belongs to another run spec or epoch"
            elif state.get("device_type") != device.type:
                problem = (
                    f"checkpoint {path} was written on {state.get('device_type')}; resuming on "
                    f"{device.type} would not reproduce the run"
                )
            else:
                return Start(epochs_done, state)
    files.clear_checkpoints()
    return Start(0, restarted_because=problem)


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
    """One run from ``start`` (see ``resume_point``): ``epochs()`` yields each epoch's record
    once its checkpoint is on disk.

    After ``TrainingStopped`` (or any error) the object is spent; resume with a new one.
    """

    def __init__(
        self,
        spec: RunSpec,
        *,
        files: RunFiles,
        data_dir: Path,
        device: torch.device,
        start: Start,
        allow_download: bool = True,
    ) -> None:
        self.spec = spec
        self.files = files
        self._device = device
        self.device = describe(device)
        # Before any tensor is made: fp32 stays fp32, kernels are deterministic (recorded).
        self.numerics = exact_numerics(device, spec.dtype, spec.autocast)
        # The weights, the optimizer state and the computation are in the spec's dtype; with
        # autocast the weights (the master copy) stay float32 and the matmuls run in bfloat16.
        self._dtype = torch_dtype(spec.dtype)
        data = load_dataset(
            spec.dataset,
            data_dir=Path(data_dir),
            allow_download=allow_download,
            train_size=spec.train_size,
            test_size=spec.test_size,
        )
        # On CUDA the whole dataset lives on the GPU as uint8; batches are gathered by index.
        self._train, self._test = data.train.to(device), data.test.to(device)
        # The same initial weights in either dtype (float64 holds every float32 exactly).
        self._model = build_model(spec.hidden_sizes, spec.seed).to(device, self._dtype)
        self._optimizer = make_optimizer(spec, self._model.parameters())
        self._shuffle = torch.Generator(device=device)
        self._shuffle.manual_seed(spec.seed)

        names = tensor_names(spec.hidden_sizes, spec.include_biases)
        params = dict(self._model.named_parameters())
        self._measured = [params[name] for name in names]
        self.tensors = [
            TensorInfo(index=i, name=name, parameters=params[name].numel())
            for i, name in enumerate(names)
        ]
        self._epoch = start.epoch
        if start.state is None:
            self.initial_variances: list[float] = self._variances().tolist()
        else:
            self._model.load_state_dict(start.state["model"])
            self._optimizer.load_state_dict(start.state["optimizer"])
            self._shuffle.set_state(start.state["shuffle_rng"])
            self.initial_variances = list(start.state["initial_variances"])
        # One meter over the run's tolerances and the spectrum's ladder together: one snapshot and
        # one pass over the weights (cheaper than a second meter: benchmarks/bench_mechanism.py).
        # The ladder starts at 0, so the union's first tolerance is exact equality.
        self.spectrum_tolerances = list(SPECTRUM_TOLERANCES)
        union = sorted(set(spec.tolerances) | set(self.spectrum_tolerances))
        assert union[0] == 0.0
        self._union_size = len(union)
        self._own_columns = [union.index(t) for t in spec.tolerances]
        self._spectrum_columns = [union.index(t) for t in self.spectrum_tolerances]
        self._meter = ConstancyMeter(
            self._measured,
            union,
            spec.basis,
            chunk=1 << 18 if device.type == "cuda" else 1 << 16,
        )
        # Dead units: per hidden layer, whether each unit's ReLU fired for some training sample
        # of the epoch (ORed in by the model's forward, reset every epoch: no state to resume).
        self._fired = [torch.zeros(h, dtype=torch.bool, device=device) for h in spec.hidden_sizes]
        self._dead = [torch.zeros_like(f) for f in self._fired]
        # Per weight matrix, which of its weights lie in a dead unit's incoming row (its own
        # hidden layer) or outgoing column (the layer before); rebuilt every epoch in place.
        weights = self._measured[: len(self._model.layers)]
        self._in_dead_unit = [torch.zeros_like(w, dtype=torch.bool) for w in weights]
        # The causes (spec.causes): per weight matrix, whether each weight's loss gradient was
        # non-zero in some batch of the epoch: every batch's gradient bits ORed in on the
        # device, the gradient viewed as integers of its width (one cheap kernel; a
        # float-to-bool OR costs ~6x more: benchmarks/bench_causes.py). Its magnitude bits are
        # all 0 only when every batch's gradient was exactly 0 (-0.0 has only the sign bit).
        # Reset every epoch, and epochs end at checkpoints: nothing to resume.
        bits = torch.int64 if self._dtype == torch.float64 else torch.int32
        self._magnitude = torch.iinfo(bits).max  # all bits but the sign
        tracked = weights if spec.causes else []
        self._gradient_bits = [torch.zeros_like(w).view(bits) for w in tracked]
        self._no_gradient = [torch.zeros_like(w, dtype=torch.bool) for w in tracked]
        # The logits and the input pixels are no hidden units: never dead.
        self._no_rows = torch.zeros(CLASSES, dtype=torch.bool, device=device)
        self._no_cols = torch.zeros(IN_FEATURES, dtype=torch.bool, device=device)
        # Each test sample's loss, so the test loss can be averaged per batch_size batch.
        self._test_losses = torch.empty(len(self._test), dtype=self._dtype, device=device)

    @classmethod
    def fresh(
        cls, spec: RunSpec, files: RunFiles, data_dir: Path, device: str = "cpu"
    ) -> "Training":
        """A run from epoch 0 (benchmarks and tests that need no resume)."""
        resolved = resolve_device(device)
        return cls(
            spec,
            files=files,
            data_dir=data_dir,
            device=resolved,
            start=resume_point(spec, files, 0, resolved),
        )

    def epochs(self, should_stop: Callable[[], bool] = lambda: False) -> Iterator[EpochRecord]:
        """Epochs start.epoch+1 .. spec.epochs; ``should_stop`` is polled between batches."""
        if self._epoch == 0 and self.spec.keep_snapshots:
            save_snapshot(self.files, 0, self._model.state_dict())
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
            numbers = self._split_counts(counts.tolist())
            self._save(epoch)
            self._epoch = epoch
            yield EpochRecord(
                epoch=epoch,
                train_loss=stats[0],
                train_accuracy=stats[1],
                test_loss=stats[2],
                test_accuracy=stats[3],
                epoch_seconds=time.perf_counter() - started,
                variances=stats[4:],
                **numbers,
            )

    def _split_counts(self, ints: list[int]) -> dict[str, Any]:
        """The epoch's integers (see ``_device_epoch``) as EpochRecord fields."""
        tensors, union = len(self._measured), self._union_size
        weights, units = len(self._in_dead_unit), sum(self.spec.hidden_sizes)
        rows = [ints[i * union : (i + 1) * union] for i in range(tensors)]
        at = tensors * union
        explained = ints[at : at + weights]
        no_gradient = ints[at + weights : at + 2 * weights]
        flags = ints[at + 2 * weights : at + 2 * weights + units]
        dead, start = [], 0
        for size in self.spec.hidden_sizes:
            dead.append([j for j, d in enumerate(flags[start : start + size]) if d])
            start += size
        return {
            "counts": [[row[k] for k in self._own_columns] for row in rows],
            "spectrum": [[row[k] for k in self._spectrum_columns] for row in rows],
            "unchanged": [row[0] for row in rows[:weights]],
            "explained": explained,
            "no_gradient": no_gradient if self.spec.causes else [],
            "dead_units": dead,
        }

    def _device_epoch(self, should_stop: Callable[[], bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Queue an epoch's work without waiting for the device: [train loss, train accuracy,
        test loss, test accuracy, *variances] (float64) and the epoch's integers (int64): each
        measured tensor's constancy counts at the meter's tolerances (the run's and the
        spectrum's, ascending), each weight matrix's unchanged weights in a dead unit's row or
        column, then its unchanged weights that got no loss gradient in any batch, and each
        hidden unit's dead flag (1 = its ReLU never fired this epoch)."""
        train = self._train_pass(should_stop)
        test = self._test_pass(should_stop)
        self._mark_dead_units()
        for bits, none in zip(self._gradient_bits, self._no_gradient, strict=True):
            torch.eq(bits.bitwise_and_(self._magnitude), 0, out=none)
        weights = len(self._in_dead_unit)
        none = self._no_gradient or [None] * weights  # counts 0 when the causes are not counted
        within: list[list[torch.Tensor | None]] = [
            [dead, no] for dead, no in zip(self._in_dead_unit, none, strict=True)
        ]
        within += [[None, None]] * (len(self._measured) - weights)
        counts, inside = self._meter.measure_within(self._measured, within)
        dead = [d.long() for d in self._dead]
        return torch.cat([train, test, self._variances()]), torch.cat(
            [counts.flatten(), inside[:weights].T.flatten(), *dead]
        )

    def _mark_dead_units(self) -> None:
        """From this epoch's fired flags: the dead units, and per weight matrix the weights in
        a dead unit's incoming row (unit j of hidden layer i: row j of weight i) or outgoing
        column (unit k of hidden layer i-1: column k of weight i)."""
        for fired, dead in zip(self._fired, self._dead, strict=True):
            torch.logical_not(fired, out=dead)
        last = len(self._in_dead_unit) - 1
        for i, mask in enumerate(self._in_dead_unit):
            rows = self._dead[i] if i < last else self._no_rows
            cols = self._dead[i - 1] if i > 0 else self._no_cols
            torch.logical_or(rows[:, None], cols[None, :], out=mask)

    def _train_pass(self, should_stop: Callable[[], bool]) -> torch.Tensor:
        """One shuffled pass over the training split: [mean batch loss, accuracy] (float64)."""
        split, batch_size = self._train, self.spec.batch_size
        size = len(split)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self._device)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        order = torch.randperm(size, generator=self._shuffle, device=self._device)
        for flags in (*self._fired, *self._gradient_bits):
            flags.zero_()
        weights = self._measured[: len(self._gradient_bits)]  # none unless spec.causes
        self._model.train()
        for start in range(0, size, batch_size):
            if should_stop():
                raise TrainingStopped(f"stopped during epoch {self._epoch + 1}")
            index = order[start : start + batch_size]
            labels = split.labels.index_select(0, index)
            with self._precision():
                pixels = _pixels(split.images.index_select(0, index), self._dtype)
                logits = self._model(pixels, self._fired)
                loss = F.cross_entropy(logits, labels)
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The loss gradient, before the optimizer adds weight decay to what it applies.
            for bits, weight in zip(self._gradient_bits, weights, strict=True):
                assert weight.grad is not None  # every weight is on the loss's path
                bits.bitwise_or_(weight.grad.view(bits.dtype))
            self._optimizer.step()
            loss_sum += loss.detach()
            correct += (logits.argmax(1) == labels).sum()
        batches = -(-size // batch_size)
        return torch.stack([loss_sum / batches, correct.double() / size])

    @torch.no_grad()
    def _test_pass(self, should_stop: Callable[[], bool]) -> torch.Tensor:
        """The test split, TEST_PASS_SAMPLES at a time: [loss, accuracy] (float64). The loss is
        the mean of per-batch means over consecutive batch_size samples, as the seed's test
        loop of batch_size batches reports it."""
        split, losses = self._test, self._test_losses
        size = len(split)
        correct = torch.zeros((), dtype=torch.int64, device=self._device)
        self._model.eval()
        for start in range(0, size, TEST_PASS_SAMPLES):
            if should_stop():
                raise TrainingStopped(f"stopped during epoch {self._epoch + 1}")
            labels = split.labels[start : start + TEST_PASS_SAMPLES]
            with self._precision():
                pixels = _pixels(split.images[start : start + TEST_PASS_SAMPLES], self._dtype)
                logits = self._model(pixels)
                losses[start : start + TEST_PASS_SAMPLES] = F.cross_entropy(
                    logits, labels, reduction="none"
                )
            correct += (logits.argmax(1) == labels).sum()
        return torch.stack(
            [_mean_of_batch_means(losses, self.spec.batch_size), correct.double() / size]
        )

    def _precision(self) -> contextlib.AbstractContextManager[object]:
        """The forward pass's precision: the weights' dtype, or the spec's autocast."""
        if self.spec.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=torch_dtype(self.spec.autocast))

    def _variances(self) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([p.var(correction=0) for p in self._measured]).double()

    def _save(self, epoch: int) -> None:
        save_checkpoint(
            self.files,
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
            save_snapshot(self.files, epoch, self._model.state_dict())


def _pixels(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels to [0, 1] as torchvision's ToTensor does (float32), or straight to float64
    (never through float32): one conversion of the batch, in the run's dtype."""
    return images.to(dtype).div_(255)


def _mean_of_batch_means(losses: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The mean over consecutive ``batch_size`` chunks of ``losses`` of each chunk's mean
    (the last chunk may be shorter), in float64."""
    full = losses.numel() // batch_size * batch_size
    means = [losses[:full].view(-1, batch_size).mean(1)]
    if full < losses.numel():
        means.append(losses[full:].mean().reshape(1))
    return torch.cat(means).double().mean()
