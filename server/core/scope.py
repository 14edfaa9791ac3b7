"""Scope: which layers a constancy series covers.

- ``"all"``: the unweighted mean of every layer's percentage (the seed's "average of all layers");
- ``"last2"``: the mean of the last two layers';
- a layer index: that layer alone;
- ``"layers"`` (constancy figures only): one line per layer.

Means are over the layers' weight matrices only: bias vectors (``include_biases``) are listed
per layer but never averaged in, as in the seed.
"""

from collections.abc import Sequence
from typing import Annotated, Literal, TypeVar

import numpy as np
from pydantic import Field

from server.core.errors import NotComputed

MeanScope = Literal["all", "last2"]
# A comparison's (and the JSON views') scope: a mean, or one layer by index.
Scope = MeanScope | Annotated[int, Field(ge=0)]
# What a constancy figure draws: a line per layer, or one of the means.
FigureScope = Literal["layers"] | MeanScope

T = TypeVar("T")

_TEXT = {"layers": "per layer", "all": "mean of all layers", "last2": "mean of the last two layers"}


def describe(scope: Scope | FigureScope | str) -> str:
    """How titles and tables name a scope."""
    text = str(scope)
    return f"layer {text}" if text.isdigit() else _TEXT[text]


def mean(series: Sequence[Sequence[float]]) -> list[float]:
    """Unweighted mean per epoch of equally long series (summed in order, as Python's sum)."""
    return [sum(values) / len(values) for values in zip(*series, strict=True)]


def weight_layers(names: Sequence[str]) -> list[int]:
    """Positions of the weight matrices among measured tensors (biases are not averaged)."""
    return [i for i, name in enumerate(names) if not name.endswith(".bias")]


def select(
    scope: Scope | str,
    layers: dict[int, Sequence[float] | np.ndarray],
    means: dict[str, Sequence[float] | np.ndarray],
    what: str,
) -> list[float]:
    """The series of ``scope`` (also as text: "2") from per-layer series (by index) and the
    means ("all", "last2"); NotComputed names the layers ``what`` has."""
    return _floats(pick(scope, layers, means, what))


def pick(scope: Scope | str, layers: dict[int, T], means: dict[str, T], what: str) -> T:
    """What ``select`` picks, as it is (e.g. an array of every epoch and tolerance)."""
    text = str(scope)
    if not text.isdigit():
        return means[text]
    if int(text) not in layers:
        raise NotComputed(f"{what} has no layer {text}; it has {sorted(layers)}")
    return layers[int(text)]


def _floats(series: Sequence[float] | np.ndarray) -> list[float]:
    return series.tolist() if isinstance(series, np.ndarray) else list(series)
