"""Made-up response data of the seed's shape (layers × epochs × tolerances).

The benchmark and the figure tests draw it, so that they need no database, worker or torch.
Curves are smooth, deterministic functions of their arguments, shaped like the seed's: more
constant weights at larger tolerances, fewer with weight decay."""

from datetime import UTC, datetime

import numpy as np

from server.core import scope as scopes
from server.core.experiment import IN_FEATURES, SEED_TOLERANCES, tensor_names
from server.core.schemas import (
    CompareAllOut,
    CompareOut,
    CompareRun,
    ConstancyAllOut,
    ConstancyOut,
    LayerConstancy,
    LayerWeightStats,
    MetricsOut,
    RunOut,
    RunSpec,
    RunStatus,
    WeightStatsOut,
)


def _layers(count: int) -> list[tuple[int, str, int]]:
    """(index, name, fan_in) of an MLP IN_FEATURES → 512 … → 10 with ``count`` Linear layers."""
    names = tensor_names([512] * (count - 1), include_biases=False)
    return [(i, name, IN_FEATURES if i == 0 else 512) for i, name in enumerate(names)]


def _parameters(index: int, fan_in: int, count: int) -> int:
    return fan_in * (10 if index == count - 1 else 512)


def _shape(index: int, fan_in: int, count: int) -> list[int]:
    return [10 if index == count - 1 else 512, fan_in]


def sample_run(
    run_id: int = 1,
    name: str | None = "baseline",
    weight_decay: float = 0.0,
    status: RunStatus = RunStatus.succeeded,
    epochs_done: int = 50,
) -> RunOut:
    created = datetime(2021, 9, 2, tzinfo=UTC)
    return RunOut(
        id=run_id,
        name=name,
        status=status,
        spec=RunSpec(name=name, weight_decay=weight_decay, dataset="synthetic"),
        epochs_done=epochs_done,
        created_at=created,
        started_at=created,
        finished_at=created if status == RunStatus.succeeded else None,
        error=None,
        device="cpu",
        worker="host:1",
        attempts=1,
        cancel_requested=False,
    )


def _layer_percent(epochs: np.ndarray, layer: int, tolerance: float, decay: float) -> np.ndarray:
    # Saturating curves whose ceiling rises with the tolerance and drops with weight decay.
    ceiling = 75 * (tolerance / 0.1) ** 0.35 if tolerance > 0 else 7.6 / (1 + layer)
    ceiling /= 1 + 2000 * decay * (1 + 50 * (tolerance == 0))
    wobble = 1 + 0.05 * np.sin(epochs * (layer + 1))
    return ceiling * (1 - np.exp(-epochs / (4 + 3 * layer))) * wobble


def sample_constancy(
    run_id: int = 1,
    epochs: int = 50,
    weight_decay: float = 0.0,
    tolerances: list[float] = SEED_TOLERANCES,
    layers: int = 4,
) -> ConstancyAllOut:
    x = np.arange(1, epochs + 1)
    results = []
    for tolerance in tolerances:
        per_layer = [_layer_percent(x, i, tolerance, weight_decay) for i in range(layers)]
        results.append(
            ConstancyOut(
                run_id=run_id,
                tolerance=tolerance,
                basis="previous",
                epochs=x.tolist(),
                layers=[
                    LayerConstancy(
                        index=i,
                        name=name,
                        parameters=_parameters(i, fan_in, layers),
                        shape=_shape(i, fan_in, layers),
                        percent=p.tolist(),
                    )
                    for (i, name, fan_in), p in zip(_layers(layers), per_layer, strict=True)
                ],
                mean=np.mean(per_layer, axis=0).tolist(),
                last_two_mean=np.mean(per_layer[-2:], axis=0).tolist(),
            )
        )
    return ConstancyAllOut(run_id=run_id, basis="previous", tolerances=tolerances, results=results)


def sample_compare(runs: list[RunOut], scope: str = "all") -> CompareAllOut:
    """The comparison of sample_constancy() of each run, averaged as ``scope`` says."""
    data = [sample_constancy(r.id, r.epochs_done, r.spec.weight_decay) for r in runs]
    results = []
    for t, tolerance in enumerate(SEED_TOLERANCES):
        entries = []
        for run, constancy in zip(runs, data, strict=True):
            result = constancy.results[t]
            percent = scopes.select(
                scope,
                {la.index: la.percent for la in result.layers},
                {"all": result.mean, "last2": result.last_two_mean},
                f"run {run.id}",
            )
            entries.append(
                CompareRun(
                    run_id=run.id,
                    name=run.name,
                    weight_decay=run.spec.weight_decay,
                    basis=run.spec.basis,
                    precision=run.spec.precision,
                    epochs=result.epochs,
                    percent=percent,
                )
            )
        results.append(CompareOut(tolerance=tolerance, scope=scope, runs=entries))
    return CompareAllOut(scope=scope, tolerances=SEED_TOLERANCES, results=results)


def sample_metrics(run_id: int = 1, epochs: int = 50, weight_decay: float = 0.0) -> MetricsOut:
    x = np.arange(1, epochs + 1)
    overfit = 1 / (1 + 1000 * weight_decay)
    train_loss = 2.0 * np.exp(-x / (15 * (1 + 100 * weight_decay))) + 0.25
    test_loss = 1.5 + overfit * 0.03 * np.maximum(x - 20, 0) ** 1.3
    return MetricsOut(
        run_id=run_id,
        epochs=x.tolist(),
        train_loss=train_loss.tolist(),
        train_accuracy=(0.9 - 0.55 * np.exp(-x / 12) * (1 + weight_decay)).tolist(),
        test_accuracy=(0.53 - 0.2 * np.exp(-x / 5)).tolist(),
        test_loss=test_loss.tolist(),
        epoch_seconds=[2.0] * epochs,
    )


def sample_weights(run_id: int = 1, epochs: int = 50, layers: int = 4) -> WeightStatsOut:
    x = np.arange(0, epochs + 1)
    stats = []
    for index, name, fan_in in _layers(layers):
        # PyTorch's default Linear init: uniform(±1/√fan_in), variance 1/(3·fan_in).
        initial = 1 / (3 * fan_in)
        stats.append(
            LayerWeightStats(
                index=index,
                name=name,
                parameters=_parameters(index, fan_in, layers),
                shape=_shape(index, fan_in, layers),
                variance=(initial * (1 + 0.4 * (1 - np.exp(-x / (5 + 5 * index))))).tolist(),
            )
        )
    return WeightStatsOut(run_id=run_id, epochs=x.tolist(), layers=stats)
