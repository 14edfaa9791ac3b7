"""Time to render each kind of figure, cold (drawn) and cached, at the seed's shape.

Data: 4 layers × 50 epochs × 4 tolerances (server.views.figures.samples), two runs for comparisons,
default FigureOptions (1000 × 750 px at 100 dpi). Cold = a fresh render cache, so the figure
is drawn in the thread pool; cached = the same request again. The first figure of a process also
pays for matplotlib's font loading: reported on its own line.

    python benchmarks/bench_figures.py            # 5 cold draws, 200 cache hits per kind
    python benchmarks/bench_figures.py --quick    # 1 and 20 (what `make bench` runs)
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable

from server.views.figures.draw import (
    FigureOptions,
    draw_compare,
    draw_constancy,
    draw_metrics,
    draw_weight_stats,
    label_of,
)
from server.views.figures.render import Renderer
from server.views.figures.samples import (
    sample_compare,
    sample_constancy,
    sample_metrics,
    sample_run,
    sample_weights,
)

Request = Callable[[Renderer], bytes | str]


def requests(options: FigureOptions) -> dict[str, Request]:
    base = sample_run(1, "baseline", 0.0)
    decay = sample_run(2, "weight decay", 0.001)
    label = label_of(base)
    constancy = sample_constancy(base.id)
    metrics = sample_metrics(base.id)
    weights = sample_weights(base.id)
    compare_all = sample_compare([base, decay], "all")
    compare_last2 = sample_compare([base, decay], "last2")
    return {
        "constancy per layer, 2×2 tolerances": lambda r: r.render(
            draw_constancy, constancy, options, "layers", label
        ),
        "constancy per layer, one tolerance": lambda r: r.render(
            draw_constancy, constancy.results[0], options, "layers", label
        ),
        "constancy all-layer mean, 2×2": lambda r: r.render(
            draw_constancy, constancy, options, "all", label
        ),
        "constancy last-two mean, 2×2": lambda r: r.render(
            draw_constancy, constancy, options, "last2", label
        ),
        "compare 2 runs all layers, 2×2": lambda r: r.render(draw_compare, compare_all, options),
        "compare 2 runs last two, 2×2": lambda r: r.render(draw_compare, compare_last2, options),
        "metrics loss": lambda r: r.render(draw_metrics, metrics, options, "loss", label),
        "metrics accuracy": lambda r: r.render(draw_metrics, metrics, options, "accuracy", label),
        "weight variance": lambda r: r.render(draw_weight_stats, weights, options, label),
    }


def timed(request: Request, renderer: Renderer) -> tuple[float, int]:
    start = time.perf_counter()
    result = request(renderer)
    return time.perf_counter() - start, len(result)


def measure(request: Request, cold: int, cached: int) -> dict[str, float]:
    cold_seconds = []
    for _ in range(cold):
        renderer = Renderer()
        seconds, size = timed(request, renderer)
        cold_seconds.append(seconds)
    cached_seconds = [timed(request, renderer)[0] for _ in range(cached)]
    renderer.close()
    return {
        "cold_ms": 1000 * statistics.median(cold_seconds),
        "cached_us": 1e6 * statistics.median(cached_seconds),
        "kib": size / 1024,
    }


def main(cold: int, cached: int, options: FigureOptions) -> dict[str, dict[str, float]]:
    kinds = requests(options)
    first = Renderer()
    warmup, _ = timed(next(iter(kinds.values())), first)
    first.close()
    results = {"first figure of the process": {"cold_ms": 1000 * warmup}}
    for name, request in kinds.items():
        results[name] = measure(request, cold, cached)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 cold draw, 20 cache hits")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    cold, cached = (1, 20) if args.quick else (5, 200)
    options = FigureOptions()
    results = main(cold, cached, options)
    print(f"{options.width}×{options.height} px at {options.dpi} dpi; median of {cold} cold,")
    print(f"{cached} cached requests per kind\n")
    print(f"| {'figure':<38} | cold ms | cached µs | size KiB |")
    print(f"|{'-' * 40}|--------:|----------:|---------:|")
    for name, row in results.items():
        cached_us = f"{row['cached_us']:.0f}" if "cached_us" in row else "—"
        kib = f"{row['kib']:.0f}" if "kib" in row else "—"
        print(f"| {name:<38} | {row['cold_ms']:7.0f} | {cached_us:>9} | {kib:>8} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
