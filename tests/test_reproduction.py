"""decaylab reproduce: every verdict rule on made-up stored results (a pretend worker stores
designed epochs, no training), the 404/409 refusals, the JSON, Markdown and page agreeing number
for number, and one end-to-end ``decaylab reproduce`` against real processes."""

import html
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_cli import decaylab_cli

from server.core import experiment, records
from server.core.schemas import RunStatus
from server.store import jobs
from server.views.reproduction import number

HIDDEN = [100, 100, 100]
# The weight matrices of 3072 → 100 → 100 → 100 → 10.
PARAMETERS = (3072 * 100, 100 * 100, 100 * 100, 100 * 10)
EPOCHS = 10
BASE = {"dataset": "synthetic", "hidden_sizes": HIDDEN, "epochs": EPOCHS}
TOLERANCES = (0.0, 0.001, 0.01, 0.1)
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# The made-up test loss falls this much an epoch before its lowest.
SLOPE = 0.2

# A scenario: (weight decay, seed index z in -1, 0, 1) → what its run stores:
#   percent[tolerance index][layer] (every epoch alike), the last epoch's metrics, and the
#   baseline's test loss curve as (epoch of its minimum, its last value minus epoch 4's).
Design = Callable[[float, int], dict[str, Any]]


def _layers(*rows: list[float]) -> list[list[float]]:
    return [list(row) for row in rows]


def holds(wd: float, z: int) -> dict[str, Any]:
    """Every claim as published, with a little spread over the seeds."""
    noise = [0.1 * z, 0.1 * z, 0, 0]
    if wd == 0:
        percent = _layers([2.7, 7.6, 0.2, 0.2], [5, 10, 3, 3], [15, 20, 10, 10], [50, 60, 50, 50])
        percent = [[p + n for p, n in zip(row, noise, strict=True)] for row in percent]
    else:
        percent = _layers([0, 0, 0, 0], [1, 2, 2.5, 2.5], [5, 10, 9, 9], [40, 45, 49.5, 49.5])
        percent = [percent[0]] + [
            [p + n for p, n in zip(row, noise, strict=True)] for row in percent[1:]
        ]
    metrics = {m: v * (1 + 0.01 * z) for m, v in experiment.PUBLISHED_METRICS[wd].items()}
    return {"percent": percent, "metrics": metrics, "turn": (4, 0.5 + 0.01 * z)}


def fails(wd: float, z: int) -> dict[str, Any]:
    """Every claim contradicted, clearly."""
    if wd == 0:
        percent = _layers([10, 15, 10, 10], [20] * 4, [30] * 4, [90] * 4)
    else:
        percent = _layers([20] * 4, [30] * 4, [40] * 4, [95] * 4)
    metrics = {
        m: v * (0.5 if "accuracy" in m else 1.5) * (1 + 0.01 * z)
        for m, v in experiment.PUBLISHED_METRICS[wd].items()
    }
    # The test loss falls to the last epoch: its minimum is there, below epoch 4's.
    return {"percent": percent, "metrics": metrics, "turn": (EPOCHS, -SLOPE * (EPOCHS - 4))}


def straddles_bands(wd: float, z: int) -> dict[str, Any]:
    """Each banded claim's interval across an end of its band."""
    if wd == 0:
        # Centred on the band's ends: 2.7 - 25 %, 7.6 - 25 %, 0.5 (near 0) and 75 (tol 0.1).
        percent = _layers(
            [2.025 + 0.2 * z, 5.7 + 0.5 * z, 0.5 + 0.2 * z, 0.5 + 0.2 * z],
            [10] * 4,
            [20] * 4,
            [75 + 2 * z] * 4,
        )
    else:
        # One weight of each layer unchanged at every epoch in one seed: across 0.
        percent = _layers(
            [100 / n if z == 1 else 0 for n in PARAMETERS], [5] * 4, [10] * 4, [50] * 4
        )
    metrics = {m: v * 1.1 + 0.05 * v * z for m, v in experiment.PUBLISHED_METRICS[wd].items()}
    # Lowest test loss at epochs 5, 6, 7 (the band's end is 6 of 10); the rise across 0.
    return {"percent": percent, "metrics": metrics, "turn": (6 + z, 0.1 * z)}


def straddles_orders(wd: float, z: int) -> dict[str, Any]:
    """Paired differences across 0 (every layer, the all-layer mean) and across the last two's
    +2 pp band."""
    percent = _layers([3, 8, 3, 3], [10, 15, 10, 10], [20, 25, 20, 20], [60] * 4)
    if wd != 0:
        shift = [z, z, 2 + z, 2 + z]
        percent = [[p + s for p, s in zip(row, shift, strict=True)] for row in percent]
    return {
        "percent": percent,
        "metrics": experiment.PUBLISHED_METRICS[wd],
        "turn": (4, 0.5),
    }


def alike(wd: float, z: int) -> dict[str, Any]:
    """Both weight decays store the same: every paired difference is exactly 0."""
    return straddles_orders(0.0, z) | {"metrics": experiment.PUBLISHED_METRICS[wd]}


def loss_curve(last: float, turn: tuple[int, float]) -> list[float]:
    """A test loss per epoch: lowest at ``turn[0]``, falling SLOPE an epoch before it, straight
    to ``last`` after it, and ``last`` minus epoch 4's = ``turn[1]``."""
    low_epoch, rise = turn
    lowest = last - rise - SLOPE * (low_epoch - 4)
    curve = []
    for e in range(1, EPOCHS + 1):
        if e <= low_epoch:
            curve.append(lowest + SLOPE * (low_epoch - e))
        else:
            curve.append(lowest + (last - lowest) * (e - low_epoch) / (EPOCHS - low_epoch))
    return curve


def store_designed(db, design: Design) -> None:
    """A pretend worker: claims every queued run and stores the design's epochs, succeeded."""
    tensors = [records.TensorInfo(i, f"layers.{i}.weight", n) for i, n in enumerate(PARAMETERS)]
    while True:
        with db.write() as session:
            claim = jobs.claim_run(session, "test:1", lease_seconds=60)
        if claim is None:
            return
        lease, spec = claim.lease, claim.spec
        data = design(spec.weight_decay, spec.seed - 1)
        counts = [
            [round(data["percent"][t][layer] / 100 * n) for t in range(len(TOLERANCES))]
            for layer, n in enumerate(PARAMETERS)
        ]
        curve = loss_curve(data["metrics"]["test_loss"], data["turn"])
        with db.write() as session:
            jobs.start_training(
                session,
                lease,
                start_epoch=0,
                device="cpu",
                tensors=tensors,
                initial_variances=[0.1] * 4,
            )
        for e in range(1, EPOCHS + 1):
            record = records.EpochRecord(
                epoch=e,
                **{m: data["metrics"][m] for m in METRICS if m != "test_loss"},
                test_loss=curve[e - 1],
                epoch_seconds=0.1,
                counts=counts,
                variances=[0.01] * 4,
            )
            with db.write() as session:
                jobs.record_epoch(session, lease, record, lease_seconds=60)
        with db.write() as session:
            jobs.finish_run(session, lease, RunStatus.succeeded)


def reproduce(client, db, design: Design, seeds: int = 3) -> dict[str, Any]:
    grid = {"weight_decay": [0, 0.001], "seed": list(range(seeds))}
    created = client.post("/sweeps", json={"base": BASE, "grid": grid})
    assert created.status_code == 201, created.text
    store_designed(db, design)
    response = client.get(f"/sweeps/{created.json()['id']}/reproduction")
    assert response.status_code == 200, response.text
    return response.json()


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in report["claims"]}


# Every claim of the report, by its id.
METRIC_CLAIMS = [f"metrics.wd{wd:g}.{m}" for wd in (0, 0.001) for m in METRICS]
TURN_CLAIMS = ["test_loss.turn", "test_loss.rise"]
BAND_CLAIMS = [
    *METRIC_CLAIMS,
    *TURN_CLAIMS,
    *(f"tol0.layer{i}" for i in range(4)),
    *(f"tol0.1.layer{i}" for i in range(4)),
    *(f"decay_tol0.layer{i}" for i in range(4)),
]
LOWER_CLAIMS = [
    *(f"lower.tol{t:g}.layer{i}" for t in TOLERANCES[:3] for i in range(4)),
    *(f"mean_all.tol{t:g}" for t in TOLERANCES),
]
LAST2_CLAIMS = [f"mean_last2.tol{t:g}" for t in TOLERANCES]
ORDER_CLAIMS = LOWER_CLAIMS + LAST2_CLAIMS
ALL_CLAIMS = BAND_CLAIMS + ORDER_CLAIMS


@pytest.mark.parametrize(
    ("design", "seeds", "expected", "claims"),
    [
        (holds, 3, "holds", ALL_CLAIMS),
        (fails, 3, "fails", ALL_CLAIMS),
        (straddles_bands, 3, "inconclusive", BAND_CLAIMS),
        (straddles_orders, 3, "inconclusive", ORDER_CLAIMS),
        # A difference of exactly 0 does not exclude 0; it lies within the last two's band.
        (alike, 3, "inconclusive", LOWER_CLAIMS),
        (alike, 3, "holds", LAST2_CLAIMS),
        # One seed: no interval, nothing decided.
        (holds, 1, "inconclusive", ALL_CLAIMS),
    ],
    ids=[
        "holds",
        "fails",
        "bands-inconclusive",
        "orders-inconclusive",
        "zero-inconclusive",
        "zero-within-band",
        "one-seed",
    ],
)
def test_every_claim_holds_fails_or_is_inconclusive_by_its_rule(
    client, db, design, seeds, expected, claims
):
    report = reproduce(client, db, design, seeds)
    found = verdicts(report)
    assert sorted(found) == sorted(ALL_CLAIMS)
    assert {c: found[c] for c in claims} == dict.fromkeys(claims, expected)
    assert report["verdicts"] == {
        v: list(found.values()).count(v) for v in ("holds", "fails", "inconclusive")
    }


@pytest.mark.backends("sqlite", "postgresql")
def test_the_numbers_are_the_seeds_mean_and_t_interval_of_the_stored_values(client, db):
    from scipy import stats

    report = reproduce(client, db, straddles_bands)
    by_id = {c["id"]: c for c in report["claims"]}
    # Layer 0 without decay at tolerance 0, as stored (counts of 307,200 weights).
    values = np.array([round((2.025 + 0.2 * z) / 100 * PARAMETERS[0]) for z in (-1, 0, 1)])
    values = 100 * values / PARAMETERS[0]
    claim = by_id["tol0.layer0"]
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert claim["n"] == 3 and claim["band_low"] == pytest.approx(2.7 * 0.75)
    np.testing.assert_allclose(
        [claim["mean"], claim["ci_low"], claim["ci_high"]],
        [values.mean(), values.mean() - half, values.mean() + half],
        rtol=1e-12,
    )
    # The test accuracy is reported in %, the published 53.0 %.
    accuracy = by_id["metrics.wd0.test_accuracy"]
    assert accuracy["published"] == "53%" and accuracy["unit"] == "%"
    assert accuracy["mean"] == pytest.approx(100 * 0.53 * 1.1)
    setup = report["setup"]
    assert setup["seeds"] == [0, 1, 2] and setup["stand_in"] is True
    assert any("synthetic" in d for d in setup["deviations"])
    assert "not verdicts on the write-up's CIFAR-10" in report["caveat"]


@pytest.mark.parametrize(
    ("grid", "base", "says"),
    [
        ({"weight_decay": [0, 0.01], "seed": [0, 1]}, {}, "not 0 and 0.001"),
        ({"weight_decay": [0, 0.001], "learning_rate": [0.01, 0.1]}, {}, "more than weight"),
        ({"weight_decay": [0, 0.001]}, {"tolerances": [0, 0.1]}, "tolerances [0.001, 0.01]"),
        ({"weight_decay": [0, 0.001]}, {"hidden_sizes": [100]}, "2 weight matrices"),
    ],
)
def test_a_sweep_of_another_shape_is_409_saying_why(client, grid, base, says):
    created = client.post("/sweeps", json={"base": BASE | base, "grid": grid}).json()
    response = client.get(f"/sweeps/{created['id']}/reproduction")
    assert response.status_code == 409 and says in response.json()["detail"], response.text
    page = client.get(f"/ui/sweeps/{created['id']}")
    assert f"/ui/sweeps/{created['id']}/reproduction" not in page.text


def test_an_unfinished_sweep_is_409_and_an_unknown_one_404(client):
    grid = {"weight_decay": [0, 0.001], "seed": [0, 1]}
    created = client.post("/sweeps", json={"base": BASE, "grid": grid}).json()
    response = client.get(f"/sweeps/{created['id']}/reproduction")
    assert response.status_code == 409 and "not succeeded" in response.json()["detail"]
    page = client.get(f"/ui/sweeps/{created['id']}/reproduction")
    assert page.status_code == 409 and "not succeeded" in page.text
    assert client.get("/sweeps/99/reproduction").status_code == 404


def _cells(row: str) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def test_the_markdown_and_the_page_show_the_jsons_numbers(client, db):
    report = reproduce(client, db, straddles_bands)
    sweep_id = report["sweep_id"]
    markdown = client.get(f"/sweeps/{sweep_id}/reproduction", params={"format": "md"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    rows = [
        line for line in markdown.text.splitlines() if line.startswith("| ") and "---" not in line
    ]
    rows = [[c.strip().strip("*") for c in r.strip("|").split("|")] for r in rows]
    md = {r[0]: r for r in rows if r[0] != "measured"}
    page = client.get(f"/ui/sweeps/{sweep_id}/reproduction")
    assert page.status_code == 200
    html_rows = dict(re.findall(r'<tr data-claim="([^"]+)">(.*?)</tr>', page.text, re.S))
    assert len(md) == len(html_rows) == len(report["claims"])
    cut = 0
    for claim in report["claims"]:
        low, high = claim["ci_low"], claim["ci_high"]
        interval = "— (one seed)" if low is None else f"[{number(low)}, {number(high)}]"
        # A percentage's interval is shown within 0–100, marked (the JSON keeps the t interval).
        if claim["unit"] == "%" and low is not None and (low < 0 or high > 100):
            interval = f"[{number(max(low, 0.0))}, {number(min(high, 100.0))}]*"
            cut += 1
        shown = [
            claim["published"],
            number(claim["mean"]),
            interval,
            str(claim["n"]),
            claim["verdict"],
        ]
        assert _cells(html_rows[claim["id"]])[2:7] == shown
        shown[2] = interval.rstrip("*")  # the Markdown's cells are read without their stars
        assert [md[claim["measure"]][i] for i in (2, 3, 4, 5, 6)] == shown
    assert cut > 0  # random percentages over two seeds: some intervals reach past 0 or 100
    assert ('id="cut-note"' in page.text) and ("* The interval is cut" in markdown.text)
    for figure in report["figures"]:
        assert f"]({figure['file']})" in markdown.text
        # Drawn at the size it is shown (ui.js asks for its box's pixels), as on every page.
        assert f'data-src="{html.escape(figure["url"])}"' in page.text
    # The sweep page links to the report.
    assert f"/ui/sweeps/{sweep_id}/reproduction" in client.get(f"/ui/sweeps/{sweep_id}").text


@pytest.mark.slow
def test_decaylab_reproduce_end_to_end_on_synthetic_data(processes, tmp_path):
    processes.start_server()
    processes.start_worker()
    out = tmp_path / "report"
    result = decaylab_cli(
        "reproduce",
        "--seeds", "2",
        "--epochs", "3",
        "--dataset", "synthetic",
        "--train-size", "256",
        "--test-size", "128",
        "--hidden-sizes", "16,16,16",
        "--out", str(out),
        url=processes.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report_md = (out / "report.md").read_text()
    sweep_id = int(re.search(r"sweep (\d+)", report_md).group(1))
    served = processes.api("GET", f"/sweeps/{sweep_id}/reproduction", params={"format": "md"})
    assert report_md == served.text
    body = processes.api("GET", f"/sweeps/{sweep_id}/reproduction").json()
    assert body["setup"]["seeds"] == [0, 1] and body["setup"]["train_size"] == 256
    assert sum(body["verdicts"].values()) == len(body["claims"]) == len(ALL_CLAIMS)
    for figure in body["figures"]:
        assert (out / figure["file"]).read_bytes().startswith(b"\x89PNG")
    assert f"sweep {sweep_id}" in result.stdout
    # Again on the finished sweep: nothing new is trained, the same report is written.
    again = decaylab_cli(
        "reproduce", "--sweep", str(sweep_id), "--out", str(tmp_path / "again"), url=processes.url
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "report.md").read_text() == report_md
    assert processes.api("GET", "/sweeps").json()["total"] == 1
