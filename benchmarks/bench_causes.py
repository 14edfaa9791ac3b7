"""What counting the causes costs per epoch, and what float64 and bfloat16 autocast epochs take.

    .venv/bin/python benchmarks/bench_causes.py [--batches N] [--epochs N]

On the seed's MLP (3072-512-512-512-10), batch 64, on synthetic CIFAR-shaped data, on the CPU:

  epoch      Training.epochs() in float32, float64 and float32 + bfloat16 autocast, one epoch of
             each in turn (so the machine's load hits all three alike), ``--batches`` training
             batches and a test pass of 2,000 samples; the least and the median of each;
  tracking   the per-batch extra of the causes: each weight matrix's gradient bits ORed into
             its accumulator (what the engine does; and, for comparison, a float-to-bool
             logical_or), timed apart on the seed's gradient shapes, times the batches;
  counting   the constancy meter with the second mask (no gradient) against with the dead-unit
             mask alone: what the epoch-end count adds.
Everything is timed in CPU seconds of this process (time.process_time) with ``--threads``
torch threads (default 1): on a machine shared with other jobs wall time measures the load, CPU
time the work. Tracking and counting are timed apart (many repetitions, median); their share is
of the least float32 epoch.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.bench_mechanism import HIDDEN
from server.core.experiment import SEED_TOLERANCES, SPECTRUM_TOLERANCES
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from worker.engine.constancy import ConstancyMeter
from worker.engine.model import build_model
from worker.engine.train import Training

BATCH = 64
PRECISIONS = {
    "float32": {},
    "float64": {"dtype": "float64"},
    "float32 + bfloat16 autocast": {"autocast": "bfloat16"},
}


def cpu_seconds(work: Callable[[], object], repeat: int, warm_up: int = 3) -> float:
    """The median CPU time of ``work``."""
    for _ in range(warm_up):
        work()
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times)


def epoch_seconds(batches: int, epochs: int) -> dict[str, list[float]]:
    """Whole engine epochs per precision, interleaved."""
    seconds: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            name: Training.fresh(
                RunSpec(
                    dataset="synthetic",
                    epochs=epochs,
                    train_size=batches * BATCH,
                    test_size=2000,
                    **extra,  # type: ignore[arg-type]
                ),
                RunFiles(Path(tmp) / name),
                data_dir=Path(tmp),
            ).epochs()
            for name, extra in PRECISIONS.items()
        }
        for epoch in range(1, epochs + 1):
            for name, run in runs.items():
                started = time.process_time()
                record = next(run)
                seconds[name].append(time.process_time() - started)
                print(
                    f"epoch {epoch} {name:28s} {seconds[name][-1]:6.2f} CPU s"
                    f" ({record.epoch_seconds:.2f} s wall), unchanged "
                    f"{record.unchanged}, no gradient {record.no_gradient}",
                    flush=True,
                )
    return seconds


def tracking_seconds() -> dict[str, float]:
    """One batch's gradient tracking on the seed's weight shapes: what the engine does (the
    gradient's bits ORed into an integer accumulator) and the obvious float-to-bool OR."""
    weights = [layer.weight for layer in build_model(HIDDEN, seed=0).layers]
    grads = [torch.randn_like(w) * (torch.rand_like(w) < 0.9) for w in weights]
    bits = [torch.zeros_like(w).view(torch.int32) for w in weights]
    got = [torch.zeros_like(w, dtype=torch.bool) for w in weights]

    def engine() -> None:
        for b, grad in zip(bits, grads, strict=True):
            b.bitwise_or_(grad.view(torch.int32))

    def logical_or() -> None:
        for g, grad in zip(got, grads, strict=True):
            torch.logical_or(g, grad, out=g)

    return {
        "bits ORed (the engine)": cpu_seconds(engine, repeat=300, warm_up=20),
        "float-to-bool logical_or": cpu_seconds(logical_or, repeat=300, warm_up=20),
    }


def counting_seconds() -> float:
    """The epoch-end count with the no-gradient mask beside the dead-unit one, minus without."""
    weights = [layer.weight.detach() for layer in build_model(HIDDEN, seed=0).layers]
    union = sorted(set(SEED_TOLERANCES) | set(SPECTRUM_TOLERANCES))
    dead = [torch.rand(w.shape) < 0.05 for w in weights]
    none = [torch.rand(w.shape) < 0.1 for w in weights]
    one, two = ConstancyMeter(weights, union), ConstancyMeter(weights, union)
    alone = cpu_seconds(lambda: one.measure_within(weights, [[d] for d in dead]), repeat=20)
    both = cpu_seconds(
        lambda: two.measure_within(weights, [[d, n] for d, n in zip(dead, none, strict=True)]),
        repeat=20,
    )
    return both - alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per precision")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.batches} batches")
    print("of 64 + a 2,000-sample test pass per epoch, seed's MLP 3072-512-512-512-10\n")
    seconds = epoch_seconds(args.batches, args.epochs)
    least = {name: min(s) for name, s in seconds.items()}
    base = least["float32"]
    print("\nprecision (CPU s an epoch)      least   median   vs float32 (least)")
    for name, s in seconds.items():
        print(
            f"{name:28s} {least[name]:7.2f} s {statistics.median(s):7.2f} s"
            f"   x{least[name] / base:.2f}"
        )
    print("\nper float32 epoch                       CPU ms    % of the least epoch")
    tracking = 0.0
    for name, per_batch in tracking_seconds().items():
        seconds_per_epoch = per_batch * args.batches
        tracking = tracking or seconds_per_epoch  # the engine's way is the first
        print(
            f"gradient {name:27s}  {seconds_per_epoch * 1e3:8.1f} ms  "
            f"{100 * seconds_per_epoch / base:6.3f} %  ({per_batch * 1e6:.0f} µs a batch)"
        )
    counting = counting_seconds()
    print(
        f"no-gradient count at the epoch's end   {counting * 1e3:8.1f} ms  "
        f"{100 * counting / base:6.3f} %"
    )
    total = tracking + counting
    print(
        f"\ncauses in all: {total * 1e3:.1f} ms = {100 * total / base:.2f} % of an epoch"
        " (on by default if <= 3 %)"
    )


if __name__ == "__main__":
    main()
