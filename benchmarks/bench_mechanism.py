"""What measuring the mechanism costs: dead-unit tracking and the movement spectrum, per epoch.

    .venv/bin/python benchmarks/bench_mechanism.py [--epochs N] [--quick]

On the seed's MLP (3072-512-512-512-10) on synthetic CIFAR-shaped data (50,000/10,000 samples
unless --quick), on whatever device torch picks for the engine (CPU here):

  epoch     Training.epochs(): what one whole epoch takes (the denominator), and the process's
            RSS after every epoch (memory must not grow with the epochs);
  tracking  the per-batch extra of dead-unit tracking (each hidden layer's activations reduced
            to a per-unit "fired" flag and ORed in), timed apart on activations of batch 64,
            times the batches of an epoch, plus the once-per-epoch dead-unit masks;
  spectrum  the constancy measurement with the spectrum's ladder and the explained counts
            against the run's four tolerances alone: one meter over the union of tolerances
            (what the engine does) and, for comparison, a second meter beside the first.
Each part is timed apart (many repetitions, median) because the ±25 % noise of a whole epoch
on a shared machine would swamp it; its share is of the median epoch (target: together < 3 %).
"""

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from server.core.experiment import SEED_TOLERANCES, SPECTRUM_TOLERANCES
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from worker.engine.constancy import ConstancyMeter
from worker.engine.model import build_model
from worker.engine.train import Training

BATCH = 64
HIDDEN = [512, 512, 512]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def median_seconds(work: Callable[[], object], repeat: int, warm_up: int = 3) -> float:
    for _ in range(warm_up):
        work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tracking_seconds(batches: int) -> tuple[float, float]:
    """Seconds per epoch of the per-batch tracking, and of the epoch-end dead-unit masks."""
    activations = [torch.relu(torch.randn(BATCH, h)) for h in HIDDEN]
    fired = [torch.zeros(h, dtype=torch.bool) for h in HIDDEN]

    def per_batch() -> None:
        for x, f in zip(activations, fired, strict=True):
            f.logical_or_(x.amax(0) > 0)

    batch = median_seconds(per_batch, repeat=2000, warm_up=50)
    model = build_model(HIDDEN, seed=0)
    weights = [layer.weight for layer in model.layers]
    dead = [torch.rand(h) < 0.05 for h in HIDDEN]
    masks = [torch.zeros_like(w, dtype=torch.bool) for w in weights]
    no_rows, no_cols = torch.zeros(10, dtype=torch.bool), torch.zeros(3072, dtype=torch.bool)

    def epoch_end() -> None:
        for i, mask in enumerate(masks):
            rows = dead[i] if i < len(HIDDEN) else no_rows
            cols = dead[i - 1] if i > 0 else no_cols
            torch.logical_or(rows[:, None], cols[None, :], out=mask)

    return batch * batches, median_seconds(epoch_end, repeat=50)


def meter_seconds() -> dict[str, tuple[float, int]]:
    """Seconds per measurement and bytes held: the run's 4 tolerances alone, the union with the
    ladder in one meter (with the explained counts), and two meters side by side."""
    model = build_model(HIDDEN, seed=0)
    weights = [layer.weight.detach() for layer in model.layers]
    within: list[list[torch.Tensor | None]] = [[torch.rand(w.shape) < 0.05] for w in weights]
    union = sorted(set(SEED_TOLERANCES) | set(SPECTRUM_TOLERANCES))
    step = [0]

    def nudge() -> None:  # in place, a different half of the weights every time
        step[0] += 1
        for w in weights:
            w[step[0] % 2 :: 2].mul_(1 + 1e-4)

    own = ConstancyMeter(weights, SEED_TOLERANCES)
    one = ConstancyMeter(weights, union)
    second = ConstancyMeter(weights, SPECTRUM_TOLERANCES)
    figures = {}
    figures["own 4 tolerances"] = (
        median_seconds(lambda: (nudge(), own.measure(weights)), repeat=30),
        own.extra_bytes,
    )
    figures[f"one meter, {len(union)} tolerances + explained"] = (
        median_seconds(lambda: (nudge(), one.measure_within(weights, within)), repeat=30),
        one.extra_bytes,
    )
    figures["two meters (4, then the ladder + explained)"] = (
        median_seconds(
            lambda: (nudge(), own.measure(weights), second.measure_within(weights, within)),
            repeat=30,
        ),
        own.extra_bytes + second.extra_bytes,
    )
    nudge_only = median_seconds(nudge, repeat=30)
    return {k: (s - nudge_only, b) for k, (s, b) in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="whole epochs timed (default 4)")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 10,000/2,000 samples")
    args = parser.parse_args()
    epochs = 2 if args.quick else args.epochs
    train_size, test_size = (10_000, 2_000) if args.quick else (50_000, 10_000)
    batches = math.ceil(train_size / BATCH)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {epochs} epoch(s) of")
    print(f"{train_size} train / {test_size} test samples, seed's MLP 3072-512-512-512-10\n")

    spec = RunSpec(dataset="synthetic", epochs=epochs, train_size=train_size, test_size=test_size)
    seconds, rss = [], []
    with tempfile.TemporaryDirectory() as run_dir:
        training = Training.fresh(spec, RunFiles(Path(run_dir)), data_dir=Path(run_dir))
        for record in training.epochs():
            seconds.append(record.epoch_seconds)
            rss.append(rss_bytes())
            print(
                f"epoch {record.epoch}: {record.epoch_seconds:.2f} s, RSS {rss[-1] / 2**20:.0f}"
                f" MiB, dead units {[len(d) for d in record.dead_units]},"
                f" unchanged {record.unchanged}, explained {record.explained}",
                flush=True,
            )
        extra_held = sum(
            t.numel() * t.element_size()
            for t in [*training._fired, *training._dead, *training._in_dead_unit]
        )
    epoch = statistics.median(seconds[1:] or seconds)
    print(f"\nmedian epoch {epoch:.2f} s (epochs 2..{epochs}); fastest {min(seconds):.2f} s")
    growth = (rss[-1] - rss[1]) / 2**20 if len(rss) > 2 else 0.0
    print(f"RSS from epoch 2 to {epochs}: {growth:+.1f} MiB")

    per_batch, epoch_end = tracking_seconds(batches)
    meters = meter_seconds()
    own_s = meters["own 4 tolerances"][0]
    print("\nper epoch                                     seconds    % of the median epoch")
    print(
        f"dead-unit tracking, {batches} batches       {per_batch * 1e3:8.1f} ms  "
        f"{100 * per_batch / epoch:6.3f} %"
    )
    print(
        f"dead-unit masks at the epoch's end          {epoch_end * 1e3:8.1f} ms  "
        f"{100 * epoch_end / epoch:6.3f} %"
    )
    for name, (s, held) in meters.items():
        extra = "" if s == own_s else f"  (+{(s - own_s) * 1e3:.1f} ms over the own 4)"
        print(
            f"constancy, {name:34s} {s * 1e3:8.1f} ms  {100 * s / epoch:6.3f} %"
            f"  holds {held / 2**20:.1f} MiB{extra}"
        )
    union_name = next(k for k in meters if k.startswith("one meter"))
    total = per_batch + epoch_end + meters[union_name][0] - own_s
    print(
        f"\nmechanism in all (tracking + masks + union meter - own meter): {total * 1e3:.1f} ms"
        f" = {100 * total / epoch:.2f} % of an epoch (target < 3 %)"
    )
    print(
        f"held for it besides the meter: {extra_held / 2**20:.1f} MiB (bool masks and flags);"
        " the meter's snapshot is shared with the run's own tolerances"
    )


if __name__ == "__main__":
    main()
