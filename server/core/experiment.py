"""The experiment's facts (docs/experiment.md): the data's shape, the datasets' sizes, the
network's layers and the tensors measured, and the original experiment's tolerances. The API,
its limits and figures, and the engine all read them from here."""

from itertools import pairwise

# A CIFAR image: 3 colour planes of 32 × 32 pixels, flattened for the MLP.
IMAGE_SHAPE = (3, 32, 32)
IN_FEATURES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
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


def tensor_names(hidden_sizes: list[int], include_biases: bool) -> list[str]:
    """The measured tensors, in the order the engine measures and stores them: every Linear
    layer's weight matrix (layer 0 first), then with ``include_biases`` every bias."""
    layers = range(len(hidden_sizes) + 1)
    names = [f"layers.{i}.weight" for i in layers]
    return names + ([f"layers.{i}.bias" for i in layers] if include_biases else [])


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


# --- the published experiment (the write-up's notebook and figures), restated ---
# decaylab reproduce (server/views/reproduction.py) checks these, claim by claim.

# The original's run spec, field by field where it is not RunSpec's default; the two runs
# differ only in weight decay.
ORIGINAL_DATASET = "cifar10"
ORIGINAL_EPOCHS = 50
ORIGINAL_HIDDEN_SIZES = [512, 512, 512]
ORIGINAL_WEIGHT_DECAYS = (0.0, 0.001)
# The write-up's epoch 50 (its last); runs of E epochs are read at their last epoch.
PUBLISHED_METRICS: dict[float, dict[str, float]] = {
    0.0: {"train_loss": 0.284, "train_accuracy": 0.899, "test_loss": 2.723, "test_accuracy": 0.530},
    0.001: {
        "train_loss": 0.964,
        "train_accuracy": 0.654,
        "test_loss": 1.323,
        "test_accuracy": 0.540,
    },
}
# Without decay, tol 0, at the last epoch: % of each layer's weights exactly unchanged, as read
# off the figures (layers 2 and 3 "stay near 0").
PUBLISHED_TOL0_PERCENT = (2.7, 7.6, 0.0, 0.0)
# Without decay, tol 0.1: "roughly 40–75 % in every layer".
PUBLISHED_TOL01_RANGE = (40.0, 75.0)
# With decay 0.001, tol 0: "essentially 0 (below 0.001 %)".
PUBLISHED_DECAY_TOL0_BELOW = 0.001
# The baseline's test loss "starts rising after about epoch 20" of 50.
PUBLISHED_TEST_LOSS_TURN = 20
