"""The mechanism the engine measures, against independent recomputations: dead units and the
exact constancy they explain (a replay of training with forward hooks on a copy of the model,
plus the snapshots), the spectrum (NumPy from the snapshots), after-the-fact tolerances (NumPy
and the kernel), and resume after a stop."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_constancy import float32s, numpy_counts

from server.core.experiment import SPECTRUM_TOLERANCES
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from server.store.models import pack_units, unpack_units
from server.views.posthoc import constant_count
from worker.engine.constancy import ConstancyMeter
from worker.engine.data import load_dataset
from worker.engine.devices import resolve_device
from worker.engine.model import build_model
from worker.engine.train import Training, TrainingStopped, make_optimizer, resume_point

# Two hidden layers, so that a weight matrix (layer 1) has both dead rows and dead columns; a
# learning rate high enough that units die within a few epochs on the synthetic data.
SPEC = dict(
    dataset="synthetic",
    hidden_sizes=[32, 16],
    train_size=768,
    test_size=128,
    batch_size=32,
    epochs=4,
    learning_rate=0.05,
    keep_snapshots=True,
)


def training(spec: RunSpec, run_dir: Path, epochs_done: int = 0) -> Training:
    device = resolve_device("cpu")
    return Training(
        spec,
        files=RunFiles(run_dir),
        data_dir=run_dir / "data",
        device=device,
        start=resume_point(spec, RunFiles(run_dir), epochs_done, device),
    )


def snapshots(run_dir: Path, epochs: int) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(RunFiles(run_dir).snapshot(e))) for e in range(epochs + 1)]


def replay_fired(spec: RunSpec) -> tuple[list[list[np.ndarray]], dict[str, torch.Tensor]]:
    """Train a copy of the model the way the engine does, recording each Linear layer's output
    with forward hooks batch by batch: per epoch, per hidden layer, which units fired (ReLU
    output > 0, i.e. pre-activation > 0) for some training sample; and the final weights."""
    data = load_dataset(
        spec.dataset,
        data_dir=Path("."),
        allow_download=False,
        train_size=spec.train_size,
        test_size=spec.test_size,
    )
    model = build_model(spec.hidden_sizes, spec.seed)
    optimizer = make_optimizer(spec, model.parameters())
    shuffle = torch.Generator()
    shuffle.manual_seed(spec.seed)
    hidden = len(spec.hidden_sizes)
    batches: list[list[np.ndarray]] = []

    def record(i: int):
        def hook(_module, _inputs, output):
            batches[-1][i] = (output.detach() > 0).any(0).numpy()

        return hook

    for i, layer in enumerate(model.layers[:hidden]):
        layer.register_forward_hook(record(i))
    per_epoch = []
    images, labels = data.train.images, data.train.labels
    for _ in range(spec.epochs):
        order = torch.randperm(len(labels), generator=shuffle)
        fired = [np.zeros(h, bool) for h in spec.hidden_sizes]
        for start in range(0, len(labels), spec.batch_size):
            index = order[start : start + spec.batch_size]
            batches.append([None] * hidden)
            logits = model(images[index].float() / 255)
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for i in range(hidden):
                fired[i] |= batches[-1][i]
        per_epoch.append(fired)
    return per_epoch, model.state_dict()


@pytest.fixture(scope="module", params=[0.0, 0.01], ids=["no-decay", "decay"])
def trained(request, tmp_path_factory):
    spec = RunSpec(**SPEC, weight_decay=request.param)
    run_dir = tmp_path_factory.mktemp("run")
    engine = training(spec, run_dir)
    records = list(engine.epochs())
    return spec, run_dir, engine, records


def test_dead_units_and_explained_counts_match_a_hooked_replay_and_the_snapshots(trained):
    spec, run_dir, engine, records = trained
    fired, replayed = replay_fired(spec)
    weights = snapshots(run_dir, spec.epochs)
    # The replay is the same training: it ends on the very weights the engine saved.
    assert all(np.array_equal(replayed[n].numpy(), weights[-1][n]) for n in weights[-1])
    names = [f"layers.{i}.weight" for i in range(len(spec.hidden_sizes) + 1)]
    dead_seen = 0
    for record, fired_in_epoch, before, after in zip(
        records, fired, weights[:-1], weights[1:], strict=True
    ):
        dead = [np.flatnonzero(~f).tolist() for f in fired_in_epoch]
        assert record.dead_units == dead
        dead_seen += sum(map(len, dead))
        unchanged, explained = [], []
        for i, name in enumerate(names):
            same = before[name] == after[name]  # exact (-0.0 == +0.0)
            rows = np.zeros(same.shape[0], bool)
            cols = np.zeros(same.shape[1], bool)
            if i < len(spec.hidden_sizes):
                rows[dead[i]] = True
            if i > 0:
                cols[dead[i - 1]] = True
            unchanged.append(int(same.sum()))
            explained.append(int((same & (rows[:, None] | cols[None, :])).sum()))
        assert record.unchanged == unchanged
        assert record.explained == explained
        assert record.unchanged == [row[0] for row in record.spectrum[: len(names)]]
    assert dead_seen > 0  # the check saw dead units


def test_without_decay_dead_units_explain_exact_constancy_and_with_decay_none_is_left(trained):
    spec, _, _, records = trained
    unchanged = sum(sum(r.unchanged) for r in records)
    explained = sum(sum(r.explained) for r in records)
    if spec.weight_decay == 0:
        assert unchanged > 0 and explained / unchanged > 0.5
    else:
        assert unchanged == explained == 0


@pytest.mark.parametrize("basis", ["previous", "next"])
def test_spectrum_equals_numpy_from_the_snapshots_at_every_ladder_tolerance(tmp_path, basis):
    spec = RunSpec(**SPEC | {"epochs": 2, "include_biases": True, "basis": basis})
    engine = training(spec, tmp_path)
    records = list(engine.epochs())
    assert engine.spectrum_tolerances == SPECTRUM_TOLERANCES
    weights = snapshots(tmp_path, spec.epochs)
    names = [t.name for t in engine.tensors]
    for record, before, after in zip(records, weights[:-1], weights[1:], strict=True):
        expected = [numpy_counts(before[n], after[n], SPECTRUM_TOLERANCES, basis) for n in names]
        assert record.spectrum == expected
        # The run's own tolerances, from the same (union) meter, are still NumPy's too.
        assert record.counts == [
            numpy_counts(before[n], after[n], spec.tolerances, basis) for n in names
        ]
        # And the after-the-fact NumPy kernel agrees at every ladder tolerance.
        assert record.spectrum == [
            [constant_count(before[n], after[n], t, basis) for t in SPECTRUM_TOLERANCES]
            for n in names
        ]


def numbers(record) -> dict:
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "epoch_seconds"}


def test_stop_mid_epoch_then_resume_equals_an_undisturbed_run_units_and_spectrum_included(
    trained, tmp_path
):
    spec, _, _, records = trained
    polls = 0
    batches = -(-spec.train_size // spec.batch_size) + 1  # train batches + 1 test pass

    def stop_in_epoch_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2 * batches + 5

    done = []
    with pytest.raises(TrainingStopped):
        for record in training(spec, tmp_path).epochs(stop_in_epoch_three):
            done.append(record)
    assert [r.epoch for r in done] == [1, 2]
    resumed = list(training(spec, tmp_path, epochs_done=2).epochs())
    assert [numbers(r) for r in done + resumed] == [numbers(r) for r in records]
    assert all(r.spectrum and r.dead_units and r.unchanged for r in resumed)


@pytest.mark.parametrize("basis", ["previous", "next"])
@hypothesis_settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_after_the_fact_count_equals_numpy_and_the_kernel(basis, data):
    prev = data.draw(arrays(np.float32, st.integers(1, 40), elements=float32s()))
    curr = data.draw(arrays(np.float32, prev.shape, elements=float32s()))
    tol = data.draw(
        st.one_of(
            st.sampled_from([0.0, 1e-7, 0.0123, 0.5, 1.0, 3.0]),
            st.floats(0, 10, allow_nan=False, allow_infinity=False),
        )
    )
    (expected,) = numpy_counts(prev, curr, [tol], basis)
    assert constant_count(prev, curr, tol, basis) == expected
    meter = ConstancyMeter([torch.from_numpy(prev.copy())], [tol], basis)
    assert meter.measure([torch.from_numpy(curr.copy())]).tolist() == [[expected]]


def test_measure_within_counts_exactly_equal_weights_inside_the_mask():
    prev = torch.tensor([1.0, 2.0, 3.0, 4.0, -0.0, 5.0])
    curr = torch.tensor([1.0, 2.5, 3.0, 4.0, 0.0, 5.0 + 1e-6])
    within = torch.tensor([True, True, False, True, True, True])
    other = torch.tensor([False, False, True, True, False, False])
    meter = ConstancyMeter([prev.clone()], [0.0, 0.1])
    counts, inside = meter.measure_within([curr], [[within, other]])
    assert counts.tolist() == [[4, 5]] and inside.tolist() == [[3, 2]]
    with pytest.raises(ValueError, match="bool masks"):
        meter.measure_within([curr], [[within[:3]]])


@pytest.mark.parametrize("units", [[], [0], [7, 8], [1, 5, 511], list(range(0, 64, 3))])
def test_dead_unit_bitmask_round_trips(units):
    mask = pack_units(units)
    assert unpack_units(mask) == units
    assert len(mask) <= 512 // 8
