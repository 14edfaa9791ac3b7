"""Training runs end to end on tiny synthetic jobs: learning, determinism, resume, stop, files."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from server.core.records import EpochRecord
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from server.views.posthoc import constant_count
from worker.engine.devices import resolve_device
from worker.engine.train import (
    Start,
    Training,
    TrainingDiverged,
    TrainingStopped,
    resume_point,
)

TINY = dict(
    dataset="synthetic", hidden_sizes=[32], train_size=1024, test_size=256, batch_size=32, epochs=3
)


def tiny(**changes) -> RunSpec:
    return RunSpec(**{**TINY, **changes})


def start(spec: RunSpec, run_dir: Path, epochs_done: int = 0, device: str = "cpu") -> Start:
    return resume_point(spec, RunFiles(run_dir), epochs_done, resolve_device(device))


def training(spec: RunSpec, run_dir: Path, epochs_done: int = 0, device: str = "cpu") -> Training:
    """The engine as a worker opens it after ``epochs_done`` stored epochs."""
    return Training(
        spec,
        files=RunFiles(run_dir),
        data_dir=run_dir / "data",
        device=resolve_device(device),
        start=start(spec, run_dir, epochs_done, device),
    )


def train(spec: RunSpec, run_dir: Path, epochs_done: int = 0, **kw) -> list[EpochRecord]:
    return list(training(spec, run_dir, epochs_done).epochs(**kw))


def numbers(result: EpochRecord) -> dict:
    """Everything but the wall time, which no two runs share."""
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "epoch_seconds"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[RunSpec, Path, list[EpochRecord]]:
    """An uninterrupted 3-epoch run (its run_dir keeps checkpoints 2 and 3)."""
    spec = tiny()
    run_dir = tmp_path_factory.mktemp("reference")
    return spec, run_dir, train(spec, run_dir)


def test_learns_and_reports_every_epoch(reference):
    spec, _, results = reference
    assert [r.epoch for r in results] == [1, 2, 3]
    assert results[-1].test_accuracy > 0.3  # chance is 0.1
    assert results[-1].train_loss < results[0].train_loss
    for r in results:
        assert 0 <= r.train_accuracy <= 1 and 0 <= r.test_accuracy <= 1 and r.epoch_seconds > 0
        assert len(r.counts) == 2 and all(len(c) == len(spec.tolerances) for c in r.counts)
        for counts, size in zip(r.counts, (3072 * 32, 32 * 10), strict=True):
            assert counts == sorted(counts) and counts[-1] <= size


def test_same_spec_same_numbers(reference, tmp_path):
    spec, _, results = reference
    assert [numbers(r) for r in train(spec, tmp_path)] == [numbers(r) for r in results]
    changed = train(tiny(weight_decay=0.01, epochs=1), tmp_path / "wd")
    assert numbers(changed[0]) != numbers(results[0])


@pytest.fixture
def copied(reference, tmp_path) -> tuple[RunSpec, Path, list[EpochRecord]]:
    """The reference run's files in a directory of the test's own (a failed resume clears it)."""
    spec, run_dir, results = reference
    shutil.copytree(run_dir, tmp_path / "run")
    return spec, tmp_path / "run", results


def test_resume_from_a_checkpoint_finishes_like_an_uninterrupted_run(copied):
    spec, run_dir, results = copied
    # Only the newest two checkpoints are kept.
    files = RunFiles(run_dir)
    assert sorted(p.name for p in files.checkpoints.iterdir()) == ["epoch_0002.pt", "epoch_0003.pt"]
    resumed = train(spec, run_dir, epochs_done=2)
    assert [numbers(r) for r in resumed] == [numbers(results[2])]


def test_a_missing_checkpoint_restarts_from_epoch_0_and_says_why(copied):
    spec, run_dir, _ = copied
    begun = start(spec, run_dir, epochs_done=1)
    assert (begun.epoch, begun.state) == (0, None)
    assert begun.restarted_because.endswith("epoch_0001.pt not found")
    assert not RunFiles(run_dir).checkpoints.exists()  # never to be resumed from now


def test_stop_between_batches_then_resume(reference, tmp_path):
    spec, _, results = reference
    polls = 0

    def stop_in_epoch_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 33 + 10  # epoch 1: 32 train batches + 1 test pass; then 10 into epoch 2

    done = []
    with pytest.raises(TrainingStopped):
        for result in training(spec, tmp_path).epochs(stop_in_epoch_two):
            done.append(result)
    assert [r.epoch for r in done] == [1]
    files = RunFiles(tmp_path)
    assert files.checkpoint(1).exists() and not files.checkpoint(2).exists()
    resumed = train(spec, tmp_path, epochs_done=1)
    assert [numbers(r) for r in done + resumed] == [numbers(r) for r in results]


def test_checkpoint_of_another_spec_is_not_used(copied):
    spec, run_dir, _ = copied
    renamed = spec.model_copy(update={"name": "renamed later"})
    assert start(renamed, run_dir, epochs_done=3).epoch == 3
    other = spec.model_copy(update={"weight_decay": 0.5})
    begun = start(other, run_dir, epochs_done=3)
    assert begun.epoch == 0 and "another run spec" in begun.restarted_because


def test_unreadable_checkpoint_is_not_used(tmp_path):
    path = RunFiles(tmp_path).checkpoint(1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cut short by a full disk")
    begun = start(tiny(), tmp_path, epochs_done=1)
    assert begun.epoch == 0 and "unreadable" in begun.restarted_because


def test_fresh_start_forgets_old_checkpoints(tmp_path):
    spec = tiny(epochs=1)
    stale = RunFiles(tmp_path).checkpoint(7)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier attempt")
    train(spec, tmp_path)
    assert sorted(p.name for p in stale.parent.iterdir()) == ["epoch_0001.pt"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("basis", ["previous", "next"])
def test_snapshots_reproduce_counts_and_variances(tmp_path, basis, dtype):
    """Counts equal np.isclose on the snapshots, in the run's dtype (float64 snapshots are
    float64), and so does the after-the-fact count of other tolerances."""
    spec = tiny(epochs=2, keep_snapshots=True, include_biases=True, basis=basis, dtype=dtype)
    engine = training(spec, tmp_path)
    names = [t.name for t in engine.tensors]
    assert names == ["layers.0.weight", "layers.1.weight", "layers.0.bias", "layers.1.bias"]
    assert [t.parameters for t in engine.tensors] == [3072 * 32, 32 * 10, 32, 10]
    results = list(engine.epochs())
    snapshots = [dict(np.load(RunFiles(tmp_path).snapshot(e))) for e in range(3)]
    assert sorted(snapshots[0]) == sorted(names)
    assert all(array.dtype == np.dtype(dtype) for array in snapshots[-1].values())
    variances = [engine.initial_variances] + [r.variances for r in results]
    for epoch, snapshot in enumerate(snapshots):
        expected = [float(np.var(snapshot[n], dtype=np.float64)) for n in names]
        assert variances[epoch] == pytest.approx(expected, rel=1e-5)
    for r, before, after in zip(results, snapshots, snapshots[1:], strict=False):
        expected = []
        for n in names:
            a, b = (after[n], before[n]) if basis == "previous" else (before[n], after[n])
            expected.append([int(np.isclose(a, b, rtol=t, atol=0).sum()) for t in spec.tolerances])
            assert [constant_count(before[n], after[n], t, basis) for t in spec.tolerances] == (
                expected[-1]
            )
        assert r.counts == expected


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizers(tmp_path, dtype):
    """Every optimizer (fused, one kernel for all parameters) in either dtype."""

    def first(**changes):
        spec = tiny(epochs=1, learning_rate=0.001, dtype=dtype, **changes)
        return numbers(train(spec, tmp_path)[0])

    # Without decay Adam and AdamW are the same update; with it, L2 and decoupled decay differ.
    assert first(optimizer="adam") == first(optimizer="adamw")
    assert first(optimizer="adam", weight_decay=0.1) != first(optimizer="adamw", weight_decay=0.1)
    assert first(optimizer="adam") != first(optimizer="sgd")


def test_divergence_is_an_error_not_a_result(tmp_path):
    # A learning rate this large overflows the logits within the first epoch.
    with pytest.raises(TrainingDiverged, match=r"epoch 1: .*not all finite.*learning_rate"):
        train(tiny(epochs=2, learning_rate=1e30, momentum=0), tmp_path)
    assert not RunFiles(tmp_path).checkpoint(1).exists()


def test_test_loss_is_the_mean_of_batch_size_batch_means(tmp_path):
    """The test pass forwards 1,000 samples at once, yet reports what the seed's loop over
    batches of batch_size reports: the mean of the batches' mean losses (last one shorter)."""
    spec = tiny(epochs=1, test_size=300, batch_size=64)  # batches of 64 × 4 and one of 44
    engine = training(spec, tmp_path)
    (result,) = engine.epochs()
    model, test = engine._model, engine._test
    with torch.no_grad():
        means = [
            torch.nn.functional.cross_entropy(
                model(test.images[i : i + 64].float() / 255), test.labels[i : i + 64]
            ).item()
            for i in range(0, 300, 64)
        ]
    assert result.test_loss == pytest.approx(sum(means) / len(means), rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_inside_a_cuda_epoch(tmp_path):
    engine = training(tiny(epochs=1), tmp_path, device="cuda")
    assert engine.device.startswith("cuda:0 (")
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        stats, counts = engine._device_epoch(lambda: False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.is_cuda and counts.is_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_are_deterministic_and_resume_exactly(tmp_path):
    spec = tiny()
    run = [numbers(r) for r in training(spec, tmp_path, device="cuda").epochs()]
    again = training(spec, tmp_path / "b", device="cuda").epochs()
    assert [numbers(r) for r in again] == run
    resumed = training(spec, tmp_path, epochs_done=2, device="cuda").epochs()
    assert [numbers(r) for r in resumed] == run[2:]
