"""The experiment's facts (docs/experiment.md): the data's shape, the datasets' sizes and the
seed's tolerances. The API's limits and the engine both read them from here."""

from itertools import pairwise

# A CIFAR image: 3 colour planes of 32 × 32 pixels, flattened for the MLP.
IMAGE_SHAPE = (3, 32, 32)
IN_FEATURES = 3 * 32 * 32
CLASSES = 10
# (train, test) samples: what CIFAR-10 has, and what the synthetic set generates by default.
DATASET_SIZES: dict[str, tuple[int, int]] = {
    "cifar10": (50_000, 10_000),
    "synthetic": (50_000, 10_000),
}
# Test samples the engine forwards at once (the test loss is still the mean of the seed's
# batch_size batches); the API's memory estimate counts them.
TEST_PASS_SAMPLES = 1000
# The tolerances of the seed's 2 × 2 grid of panels.
SEED_TOLERANCES = [0.0, 0.001, 0.01, 0.1]


def layer_sizes(hidden_sizes: list[int]) -> list[int]:
    """Features at each boundary of the MLP: 3072 → hidden_sizes… → 10."""
    return [IN_FEATURES, *hidden_sizes, CLASSES]


def weight_shapes(hidden_sizes: list[int]) -> list[tuple[int, int]]:
    """Each Linear layer's weight matrix as (out_features, in_features), layer 0 first."""
    return [(b, a) for a, b in pairwise(layer_sizes(hidden_sizes))]


def dataset_sizes(dataset: str, train_size: int | None, test_size: int | None) -> tuple[int, int]:
    """The samples a run uses: what it asked for, else the whole dataset."""
    train, test = DATASET_SIZES[dataset]
    return train_size or train, test_size or test


# The movement spectrum: constancy at one fixed ladder of tolerances shared by every run, beside
# its own. 0 (exactly equal), then four per decade from 1e-7 (about one fp32 ulp of relative
# change: float32 resolves 2**-23 ≈ 1.2e-7) to 1 (a change as large as the weight), rounded to
# three digits so the ladder reads well in JSON; it holds the seed's 0.001, 0.01 and 0.1 exactly.
# Each run stores the ladder it measured (run_mechanism.tolerances), so changing it later leaves
# older runs readable.
SPECTRUM_DECADES = (-7, 0)
SPECTRUM_PER_DECADE = 4
SPECTRUM_TOLERANCES: list[float] = [0.0] + [
    float(f"{10 ** (k / SPECTRUM_PER_DECADE):.3g}")
    for k in range(
        SPECTRUM_DECADES[0] * SPECTRUM_PER_DECADE, SPECTRUM_DECADES[1] * SPECTRUM_PER_DECADE + 1
    )
]
