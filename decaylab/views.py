"""The API's analysis views, as the server's registry declares them, and its run
statuses.

Generated from server/views/registry.py by ``python -m server.views.registry``
(tests/test_views.py checks that it is current): do not edit. The client's view
methods and the CLI's ``export --view`` choices come from this table."""

from typing import Literal, NamedTuple

# A run's statuses, and those it ends in (server/store/lifecycle.py).
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = frozenset(("cancelled", "failed", "succeeded"))


class View(NamedTuple):
    path: str
    # What the path or the runs parameter names: a run, runs, or a sweep.
    subject: Literal["run", "runs", "sweep"]
    # The query parameters the view takes besides its subject and the answer's form.
    parameters: tuple[str, ...]
    summary: str


VIEWS: dict[str, View] = {
    "metrics": View(
        "/runs/{run_id}/metrics",
        "run",
        ("metric",),
        "Loss and accuracy (fractions) per epoch so far",
    ),
    "constancy": View(
        "/runs/{run_id}/constancy",
        "run",
        ("tol", "scope"),
        "% of each layer's weights constant from epoch e-1 to e",
    ),
    "weights": View(
        "/runs/{run_id}/weights",
        "run",
        (),
        "Each layer's weight variance per epoch (epoch 0 = initial weights)",
    ),
    "compare": View(
        "/compare",
        "runs",
        ("tol", "scope"),
        "Runs side by side: % of weights constant per epoch at a tolerance",
    ),
    "units": View(
        "/runs/{run_id}/units",
        "run",
        (),
        "Dead ReLU units per epoch, and how much exact constancy they explain",
    ),
    "spectrum": View(
        "/runs/{run_id}/spectrum",
        "run",
        (),
        "% of each layer's weights constant at every tolerance of the shared ladder",
    ),
    "compare_spectrum": View(
        "/compare/spectrum",
        "runs",
        (),
        "Runs' movement spectra side by side",
    ),
    "causes": View(
        "/runs/{run_id}/causes",
        "run",
        (),
        "Every exactly constant weight by cause: no gradient (dead unit, dead pair) or rounded",
    ),
    "sweep_constancy": View(
        "/sweeps/{sweep_id}/constancy",
        "sweep",
        ("tol", "scope", "by"),
        "Per group: mean % of weights constant per epoch with its 95% interval",
    ),
    "sweep_metrics": View(
        "/sweeps/{sweep_id}/metrics",
        "sweep",
        ("metric", "by"),
        "Per group: mean loss and accuracy per epoch with their 95% intervals",
    ),
    "sweep_summary": View(
        "/sweeps/{sweep_id}/summary",
        "sweep",
        ("tol", "scope", "epoch", "by"),
        "Dose-response: every group's mean and 95% interval at one epoch",
    ),
    "sweep_difference": View(
        "/sweeps/{sweep_id}/difference",
        "sweep",
        ("a", "b", "tol", "scope", "method", "by"),
        "Group b minus group a per epoch, with its 95% interval (Welch or paired)",
    ),
}
