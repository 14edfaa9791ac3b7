"""Query options shared by every PNG view: pixel size, resolution and what a figure shows."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# What a constancy figure plots: one line per layer, the all-layer mean or the last-two mean.
# (A comparison's scope is server.analysis.CompareScope, shared with the JSON view.)
ConstancyScope = Literal["layers", "all", "last2"]
MetricName = Literal["loss", "accuracy"]


class FigureOptions(BaseModel):
    """``width``/``height`` in pixels and ``dpi``; the PNG is exactly width × height.

    Text and lines are sized in points, so a higher dpi draws them larger on the same pixels.
    Frozen so that it can be part of a render-cache key. Routers take it as
    ``Annotated[FigureOptions, Query()]``; out-of-range values are then a 422."""

    model_config = ConfigDict(frozen=True)

    width: Annotated[int, Field(ge=200, le=4000, description="figure width in pixels")] = 1000
    height: Annotated[int, Field(ge=200, le=4000, description="figure height in pixels")] = 750
    dpi: Annotated[int, Field(ge=50, le=300, description="dots per inch")] = 100
