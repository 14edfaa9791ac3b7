"""Training runs end to end on tiny synthetic jobs: learning, determinism, resume, stop, files."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from server.schemas import RunSpec
from server.settings import snapshot_file
from worker.engine.checkpoint import checkpoint_path
from worker.engine.train import (
    CheckpointMissing,
    EpochResult,
    Training,
    TrainingDiverged,
    TrainingStopped,
)

TINY = dict(
    dataset="synthetic", hidden_sizes=[32], train_size=1024, test_size=256, batch_size=32, epochs=3
)


def tiny(**changes) -> RunSpec:
    return RunSpec(**{**TINY, **changes})


def train(spec: RunSpec, run_dir: Path, start_epoch: int = 0, **kw) -> list[EpochResult]:
    training = Training(spec, run_dir=run_dir, data_dir=run_dir / "data", start_epoch=start_epoch)
    return list(training.epochs(**kw))


def numbers(result: EpochResult) -> dict:
    """Everything but the wall time, which no two runs share."""
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "epoch_seconds"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[RunSpec, Path, list[EpochResult]]:
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


def test_resume_from_a_checkpoint_finishes_like_an_uninterrupted_run(reference):
    spec, run_dir, results = reference
    resumed = train(spec, run_dir, start_epoch=2)
    assert [numbers(r) for r in resumed] == [numbers(results[2])]
    # Only the newest two checkpoints are kept.
    assert sorted(p.name for p in checkpoint_path(run_dir, 0).parent.iterdir()) == [
        "epoch_0002.pt",
        "epoch_0003.pt",
    ]
    with pytest.raises(CheckpointMissing, match="epoch_0001.pt"):
        Training(spec, run_dir=run_dir, data_dir=run_dir, start_epoch=1)


def test_stop_between_batches_then_resume(reference, tmp_path):
    spec, _, results = reference
    polls = 0

    def stop_in_epoch_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 40 + 10  # epoch 1: 32 train + 8 test batches; then 10 into epoch 2

    done = []
    with pytest.raises(TrainingStopped):
        for result in Training(spec, run_dir=tmp_path, data_dir=tmp_path).epochs(stop_in_epoch_two):
            done.append(result)
    assert [r.epoch for r in done] == [1]
    assert checkpoint_path(tmp_path, 1).exists() and not checkpoint_path(tmp_path, 2).exists()
    resumed = train(spec, tmp_path, start_epoch=1)
    assert [numbers(r) for r in done + resumed] == [numbers(r) for r in results]


def test_checkpoint_of_another_spec_is_not_used(reference):
    spec, run_dir, _ = reference
    other = spec.model_copy(update={"weight_decay": 0.5})
    with pytest.raises(CheckpointMissing, match="another run spec"):
        Training(other, run_dir=run_dir, data_dir=run_dir, start_epoch=3)
    renamed = spec.model_copy(update={"name": "renamed later"})
    assert Training(renamed, run_dir=run_dir, data_dir=run_dir, start_epoch=3)


def test_unreadable_checkpoint_is_not_used(tmp_path):
    path = checkpoint_path(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"cut short by a full disk")
    with pytest.raises(CheckpointMissing, match="unreadable"):
        Training(tiny(), run_dir=tmp_path, data_dir=tmp_path, start_epoch=1)


def test_fresh_start_forgets_old_checkpoints(tmp_path):
    spec = tiny(epochs=1)
    stale = checkpoint_path(tmp_path, 7)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier attempt")
    train(spec, tmp_path)
    assert sorted(p.name for p in stale.parent.iterdir()) == ["epoch_0001.pt"]


@pytest.mark.parametrize("basis", ["previous", "next"])
def test_snapshots_reproduce_counts_and_variances(tmp_path, basis):
    spec = tiny(epochs=2, keep_snapshots=True, include_biases=True, basis=basis)
    training = Training(spec, run_dir=tmp_path, data_dir=tmp_path)
    names = [t.name for t in training.tensors]
    assert names == ["layers.0.weight", "layers.1.weight", "layers.0.bias", "layers.1.bias"]
    assert [t.parameters for t in training.tensors] == [3072 * 32, 32 * 10, 32, 10]
    results = list(training.epochs())
    snapshots = [dict(np.load(snapshot_file(tmp_path, e))) for e in range(3)]
    assert sorted(snapshots[0]) == sorted(names)
    variances = [training.initial_variances] + [r.variances for r in results]
    for epoch, snapshot in enumerate(snapshots):
        expected = [float(np.var(snapshot[n], dtype=np.float64)) for n in names]
        assert variances[epoch] == pytest.approx(expected, rel=1e-5)
    for r, before, after in zip(results, snapshots, snapshots[1:], strict=False):
        expected = []
        for n in names:
            a, b = (after[n], before[n]) if basis == "previous" else (before[n], after[n])
            expected.append([int(np.isclose(a, b, rtol=t, atol=0).sum()) for t in spec.tolerances])
        assert r.counts == expected


def test_optimizers(tmp_path):
    def first(**changes):
        return numbers(train(tiny(epochs=1, learning_rate=0.001, **changes), tmp_path)[0])

    # Without decay Adam and AdamW are the same update; with it, L2 and decoupled decay differ.
    assert first(optimizer="adam") == first(optimizer="adamw")
    assert first(optimizer="adam", weight_decay=0.1) != first(optimizer="adamw", weight_decay=0.1)
    assert first(optimizer="adam") != first(optimizer="sgd")


def test_divergence_is_an_error_not_a_result(tmp_path):
    # A learning rate this large overflows the logits within the first epoch.
    with pytest.raises(TrainingDiverged, match=r"epoch 1: .*not all finite.*learning_rate"):
        train(tiny(epochs=2, learning_rate=1e30, momentum=0), tmp_path)
    assert not checkpoint_path(tmp_path, 1).exists()


def test_bad_start_epoch(tmp_path):
    with pytest.raises(ValueError, match="outside 0..3"):
        Training(tiny(), run_dir=tmp_path, data_dir=tmp_path, start_epoch=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_inside_a_cuda_epoch(tmp_path):
    training = Training(tiny(epochs=1), run_dir=tmp_path, data_dir=tmp_path, device="cuda")
    assert training.device.startswith("cuda:0 (")
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        stats, counts = training._device_epoch(lambda: False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.is_cuda and counts.is_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_are_deterministic_and_resume_exactly(tmp_path):
    spec = tiny()
    run = [numbers(r) for r in Training(spec, run_dir=tmp_path, data_dir=tmp_path).epochs()]
    again = Training(spec, run_dir=tmp_path / "b", data_dir=tmp_path).epochs()
    assert [numbers(r) for r in again] == run
    resumed = Training(spec, run_dir=tmp_path, data_dir=tmp_path, start_epoch=2).epochs()
    assert [numbers(r) for r in resumed] == run[2:]
