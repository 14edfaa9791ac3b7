"""The constancy kernel against NumPy's isclose, the definition the published figures used."""

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from worker.engine.constancy import ConstancyMeter

TOLERANCES = [0.0, 0.001, 0.01, 0.1, 0.125, 0.5, 1.0]
TINY = np.float32(1e-45)  # the smallest subnormal


def numpy_counts(prev: np.ndarray, curr: np.ndarray, tolerances, basis: str) -> list[int]:
    """previous: |curr - prev| <= tol |prev|; next: np.isclose(prev, curr), relative to curr."""
    a, b = (curr, prev) if basis == "previous" else (prev, curr)
    return [int(np.isclose(a, b, rtol=tol, atol=0).sum()) for tol in tolerances]


def kernel_counts(prev: np.ndarray, curr: np.ndarray, tolerances, basis: str, chunk=1 << 16):
    meter = ConstancyMeter([torch.from_numpy(prev)], tolerances, basis, chunk=chunk)
    (counts,) = meter.measure([torch.from_numpy(curr)])
    assert counts.dtype == torch.int64
    return counts.tolist()


def pair(prev: float, curr: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([prev], np.float32), np.array([curr], np.float32)


# (prev, curr, the smallest tolerance of TOLERANCES at which the weight is constant, per basis;
# None: at none). Worked out by hand from |curr - prev| <= tol * |ref|.
PLANTED = [
    (0.0, 0.0, 0.0, 0.0),  # zeros
    (0.0, -0.0, 0.0, 0.0),  # -0.0 equals +0.0
    (0.3, 0.3, 0.0, 0.0),  # exactly equal
    (0.0, 1e-3, None, 1.0),  # from zero: no relative change is small against 0
    (1e-3, 0.0, 1.0, None),  # to zero: the change is all of the value
    (1.0, -1.0, None, None),  # sign flip: change 2x the magnitude
    (-0.5, 0.5, None, None),
    (2.0, 3.0, 0.5, 0.5),  # on the boundary of 0.5 against prev (1 <= 0.5 * 2); 1/3 against next
    (2.0, 1.0, 0.5, 1.0),  # 1 <= 0.5 * 2 against prev; 1 <= 1.0 * 1 against next
    (8.0, 9.0, 0.125, 0.125),  # on the boundary of 0.125 (1 <= 0.125 * 8)
    (8.0, float(np.nextafter(np.float32(9), np.float32(10))), 0.5, 0.125),  # one ulp past 0.125
    (1.0, 1.0 + 2**-23, 0.001, 0.001),  # one ulp of change
    (float(TINY), float(2 * TINY), 1.0, 0.5),  # subnormals: change TINY, 1.0 * TINY vs 0.5 * 2TINY
    (float(TINY), -float(TINY), None, None),  # subnormal sign flip
    (1e-40, 1e-40, 0.0, 0.0),
    (-0.0, float(TINY), None, 1.0),
]


@pytest.mark.parametrize("basis", ["previous", "next"])
@pytest.mark.parametrize("prev,curr,first_prev,first_next", PLANTED)
def test_planted_cases(basis, prev, curr, first_prev, first_next):
    a, b = pair(prev, curr)
    first = first_prev if basis == "previous" else first_next
    expected = [int(first is not None and tol >= first) for tol in TOLERANCES]
    assert kernel_counts(a, b, TOLERANCES, basis) == expected
    assert numpy_counts(a, b, TOLERANCES, basis) == expected


@pytest.mark.parametrize("basis", ["previous", "next"])
def test_planted_cases_together_and_non_finite(basis):
    prev = np.array([p for p, *_ in PLANTED] + [np.inf, np.inf, -np.inf, np.nan, 1.0], np.float32)
    curr = np.array([c for _, c, *_ in PLANTED] + [np.inf, 1.0, np.inf, np.nan, np.nan], np.float32)
    for chunk in (1, 3, 1 << 16):
        assert kernel_counts(prev, curr, TOLERANCES, basis, chunk) == numpy_counts(
            prev, curr, TOLERANCES, basis
        )


def float32s():
    specials = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-38, 1.0, -2.0, np.inf, np.nan])
    return st.one_of(st.floats(width=32), specials)


@st.composite
def weight_pairs(draw):
    prev = draw(arrays(np.float32, st.integers(1, 60), elements=float32s()))
    # Mostly small relative updates (the interesting region), some unrelated values.
    factors = draw(
        arrays(
            np.float32,
            prev.shape,
            elements=st.sampled_from([1.0, 1.0 + 2**-23, 1.001, 0.99, 1.1, 0.5, -1.0, 0.0]),
        )
    )
    other = draw(arrays(np.float32, prev.shape, elements=float32s()))
    mix = draw(arrays(np.bool_, prev.shape))
    with np.errstate(all="ignore"):
        curr = np.where(mix, other, prev * factors).astype(np.float32)
    return prev, curr


tolerance_lists = st.lists(
    st.one_of(st.floats(0, 2), st.sampled_from([0.0, 0.1, 0.1 + 1e-12, 0.5, 1e-40])),
    min_size=1,
    max_size=9,
    unique=True,
).map(sorted)


@settings(max_examples=300, deadline=None)
@given(
    weights=weight_pairs(),
    tolerances=tolerance_lists,
    basis=st.sampled_from(["previous", "next"]),
    chunk=st.integers(1, 70),
)
def test_random_parity_with_numpy(weights, tolerances, basis, chunk):
    prev, curr = weights
    with np.errstate(all="ignore"):
        expected = numpy_counts(prev, curr, tolerances, basis)
    assert kernel_counts(prev, curr, tolerances, basis, chunk) == expected


@pytest.mark.parametrize("basis", ["previous", "next"])
def test_parity_on_training_like_updates_with_32_tolerances(basis):
    rng = np.random.default_rng(0)
    prev = rng.standard_normal(200_000).astype(np.float32) * 0.02
    step = rng.standard_normal(prev.size).astype(np.float32) * 1e-4
    curr = np.where(rng.random(prev.size) < 0.1, prev, prev + step).astype(np.float32)
    tolerances = sorted([0.0, *np.geomspace(1e-5, 1.0, 31).tolist()])
    counts = kernel_counts(prev, curr, tolerances, basis, chunk=1 << 12)
    assert counts == numpy_counts(prev, curr, tolerances, basis)
    assert counts == sorted(counts) and counts[0] == int((curr == prev).sum())


@settings(max_examples=200, deadline=None)
@given(
    weights=weight_pairs(),
    tolerances=tolerance_lists,
    basis=st.sampled_from(["previous", "next"]),
)
def test_random_parity_with_numpy_in_float64(weights, tolerances, basis):
    """float64 runs: the rule in float64 (a float32 threshold would misjudge changes below
    float32's resolution), still exactly np.isclose's; updates of 1 + 2**-52 included."""
    prev32, curr32 = weights
    prev = prev32.astype(np.float64)
    with np.errstate(all="ignore"):
        curr = np.where(curr32 == prev32 * np.float32(1.0 + 2**-23), prev * (1 + 2**-52), curr32)
        expected = numpy_counts(prev, curr, tolerances, basis)
    assert kernel_counts(prev, curr, tolerances, basis, 7) == expected


def test_meter_keeps_one_snapshot_across_epochs():
    rng = np.random.default_rng(1)
    shapes = [(64, 48), (48,), (10, 64)]
    epochs = [[rng.standard_normal(s).astype(np.float32) for s in shapes]]
    for _ in range(4):  # each epoch moves a random half of the weights a little
        epochs.append(
            [
                np.where(rng.random(w.shape) < 0.5, w, w * np.float32(1.003)).astype(np.float32)
                for w in epochs[-1]
            ]
        )
    tensors = [torch.from_numpy(w.copy()) for w in epochs[0]]
    meter = ConstancyMeter(tensors, TOLERANCES, "next", chunk=500)
    held = meter.extra_bytes
    for before, after in pairwise(epochs):
        for tensor, w in zip(tensors, after, strict=True):
            tensor.copy_(torch.from_numpy(w))
        counts = meter.measure(tensors).tolist()
        expected = [
            numpy_counts(p, c, TOLERANCES, "next") for p, c in zip(before, after, strict=True)
        ]
        assert counts == expected
        assert meter.extra_bytes == held


def test_meter_memory_is_bounded_by_the_model_size():
    # The seed's MLP: the snapshot plus a chunk of workspace stays under twice the weights.
    shapes = [(512, 3072), (512, 512), (512, 512), (10, 512)]
    tensors = [torch.zeros(s) for s in shapes]
    model_bytes = sum(t.numel() * 4 for t in tensors)
    meter = ConstancyMeter(tensors, sorted(np.linspace(0, 1, 32).tolist()))
    assert model_bytes <= meter.extra_bytes <= 2 * model_bytes


def test_rejects_bad_input():
    w = torch.zeros(4)
    with pytest.raises(ValueError, match="ascending"):
        ConstancyMeter([w], [0.1, 0.0])
    with pytest.raises(ValueError, match="basis"):
        ConstancyMeter([w], [0.1], "later")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one dtype"):
        ConstancyMeter([w, w.double()], [0.1])
    with pytest.raises(TypeError, match="float32 or float64"):
        ConstancyMeter([w.half()], [0.1])
    meter = ConstancyMeter([w], [0.1])
    with pytest.raises(ValueError, match="same tensors"):
        meter.measure([torch.zeros(5)])
