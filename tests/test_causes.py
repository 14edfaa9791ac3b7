"""The causes of exact constancy (no gradient: dead unit or dead pair; or rounded away) against
an independent replay of the training that records every batch's gradients with hooks, in
float32 and float64, with and without weight decay; resume; bfloat16 autocast; the store's
migration; and the view /runs/{id}/causes (JSON, PNG, CSV, 404s)."""

import csv
import dataclasses
import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from alembic import command
from conftest import assert_drawn
from sqlalchemy import create_engine, text

import decaylab
from decaylab.client import CSV_DTYPES
from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from server.store.db import alembic_config
from server.store.limits import estimate
from server.views.causes import CAUSES_COLUMNS
from server.views.figures.draw import FigureOptions
from worker.engine.data import load_dataset
from worker.engine.devices import resolve_device, torch_dtype
from worker.engine.model import build_model
from worker.engine.train import Training, TrainingStopped, make_optimizer, resume_point
from worker.loop import Worker

# Two hidden layers (layer 1 has dead rows and dead columns), a learning rate at which units die
# within a few epochs on the synthetic data, and momentum small enough that updates of weights
# whose gradient has stopped die away within an epoch: all causes occur (dead units, dead pairs;
# rounding at the tiny learning rate of ROUNDING).
SPEC = dict(
    dataset="synthetic",
    hidden_sizes=[32, 16],
    train_size=768,
    test_size=128,
    batch_size=32,
    epochs=3,
    learning_rate=0.05,
    momentum=0.5,
    causes=True,
)
# Updates of about 1e-6 x a gradient of 1e-3..1e-2 straddle half a float32 ulp of weights of a
# few hundredths (2**-30 ≈ 9e-10 at 0.03): some round away, some do not; in float64 none should.
ROUNDING = 1e-6
# Weight decay below the edge: a step's decay, lr * wd = 5e-9 of the weight, is under half a
# float32 ulp (2**-24 ≈ 6e-8 of it), so dead weights stay put in float32 and move in float64.
DECAY = 1e-7
SMALL = FigureOptions(width=600, height=450)


def training(spec: RunSpec, run_dir: Path, epochs_done: int = 0) -> Training:
    device = resolve_device("cpu")
    files = RunFiles(run_dir)
    return Training(
        spec,
        files=files,
        data_dir=run_dir / "data",
        device=device,
        start=resume_point(spec, files, epochs_done, device),
    )


def numbers(record) -> dict:
    return {k: v for k, v in dataclasses.asdict(record).items() if k != "epoch_seconds"}


def replay_causes(spec: RunSpec) -> tuple[list[dict[str, list[int]]], dict[str, torch.Tensor]]:
    """Train a copy of the model as the engine does, in the spec's dtype, recording every
    batch's weight gradients with tensor hooks and every hidden layer's output with forward
    hooks; per epoch and weight matrix count the exactly unchanged weights by cause from the
    replay's own weights before and after the epoch. Also returns the final weights."""
    data = load_dataset(
        spec.dataset,
        data_dir=Path("."),
        allow_download=False,
        train_size=spec.train_size,
        test_size=spec.test_size,
    )
    dtype = torch_dtype(spec.dtype)
    model = build_model(spec.hidden_sizes, spec.seed).to(dtype)
    optimizer = make_optimizer(spec, model.parameters())
    shuffle = torch.Generator()
    shuffle.manual_seed(spec.seed)
    weights = [layer.weight for layer in model.layers]
    hidden = len(spec.hidden_sizes)
    got: list[torch.Tensor] = []
    fired: list[torch.Tensor] = []

    def gradient(i: int):
        def hook(grad: torch.Tensor) -> None:
            got[i] |= grad != 0

        return hook

    def output(i: int):
        def hook(_module, _inputs, out: torch.Tensor) -> None:
            fired[i] |= (out.detach() > 0).any(0)

        return hook

    for i, w in enumerate(weights):
        w.register_hook(gradient(i))
    for i, layer in enumerate(model.layers[:hidden]):
        layer.register_forward_hook(output(i))
    images, labels = data.train.images, data.train.labels
    per_epoch = []
    for _ in range(spec.epochs):
        before = [w.detach().clone() for w in weights]
        got[:] = [torch.zeros(w.shape, dtype=torch.bool) for w in weights]
        fired[:] = [torch.zeros(h, dtype=torch.bool) for h in spec.hidden_sizes]
        order = torch.randperm(len(labels), generator=shuffle)
        for start in range(0, len(labels), spec.batch_size):
            index = order[start : start + spec.batch_size]
            loss = F.cross_entropy(model(images[index].to(dtype) / 255), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        counts: dict[str, list[int]] = {k: [] for k in ("constant", "none", "dead", "rounded")}
        for i, (w, prev) in enumerate(zip(weights, before, strict=True)):
            same = w.detach() == prev
            dead = torch.zeros(w.shape, dtype=torch.bool)
            if i < hidden:
                dead |= ~fired[i][:, None]
            if i > 0:
                dead |= ~fired[i - 1][None, :]
            counts["constant"].append(int(same.sum()))
            counts["none"].append(int((same & ~got[i]).sum()))
            counts["dead"].append(int((same & dead).sum()))
            counts["rounded"].append(int((same & got[i]).sum()))
        per_epoch.append(counts)
    return per_epoch, model.state_dict()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The engine's run of SPEC with (dtype, weight decay, learning rate), trained once."""
    runs = {}

    def run(dtype: str, weight_decay: float, learning_rate: float):
        key = (dtype, weight_decay, learning_rate)
        if key not in runs:
            spec = RunSpec(
                **SPEC
                | {"dtype": dtype, "weight_decay": weight_decay, "learning_rate": learning_rate}
            )
            engine = training(spec, tmp_path_factory.mktemp("run"))
            runs[key] = spec, engine, list(engine.epochs())
        return runs[key]

    return run


def rounded(records) -> int:
    return sum(u - n for r in records for u, n in zip(r.unchanged, r.no_gradient, strict=True))


def dead_pairs(records) -> int:
    return sum(n - e for r in records for n, e in zip(r.no_gradient, r.explained, strict=True))


@pytest.mark.parametrize(
    "dtype,weight_decay,learning_rate",
    [
        ("float32", 0.0, 0.05),
        ("float32", DECAY, 0.05),
        ("float64", 0.0, 0.05),
        ("float64", DECAY, 0.05),
        ("float32", 0.0, ROUNDING),
        ("float64", 0.0, ROUNDING),
    ],
)
def test_causes_equal_a_hooked_replay_exactly(trained, dtype, weight_decay, learning_rate):
    spec, engine, records = trained(dtype, weight_decay, learning_rate)
    replayed, weights = replay_causes(spec)
    # The replay is the same training: it ends on the very weights the engine ends on.
    final = engine._model.state_dict()
    assert all(torch.equal(weights[n], final[n]) for n in weights)
    assert final["layers.0.weight"].dtype == torch_dtype(spec.dtype)
    assert engine.numerics["dtype"] == spec.dtype and engine.numerics["autocast"] is None
    for record, counts in zip(records, replayed, strict=True):
        assert record.unchanged == counts["constant"]
        assert record.no_gradient == counts["none"]
        assert record.explained == counts["dead"]
        assert [u - n for u, n in zip(record.unchanged, record.no_gradient, strict=True)] == (
            counts["rounded"]
        )
        assert all(
            e <= n <= u
            for u, n, e in zip(record.unchanged, record.no_gradient, record.explained, strict=True)
        )
    # Not vacuous: dead units and dead pairs both occur at the larger learning rate, unless
    # float64 lets the decay move every weight.
    if learning_rate > ROUNDING and (dtype == "float32" or weight_decay == 0):
        assert sum(sum(r.explained) for r in records) > 0 and dead_pairs(records) > 0
    if dtype == "float64" and weight_decay > 0:
        assert sum(sum(r.unchanged) for r in records) == 0


def test_float32_rounds_away_updates_that_float64_makes(trained):
    """At a tiny learning rate many float32 weights get a gradient every epoch and stay
    bit-identical; the same run in float64 (an ulp 2**29 times finer) moves them."""
    single = rounded(trained("float32", 0.0, ROUNDING)[2])
    double = rounded(trained("float64", 0.0, ROUNDING)[2])
    assert single > 1000
    assert double < single / 1000


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_run_stopped_mid_epoch_resumes_to_the_same_causes(dtype, tmp_path):
    spec = RunSpec(**SPEC | {"epochs": 3}, dtype=dtype)
    undisturbed = list(training(spec, tmp_path / "a").epochs())
    polls = 0

    def stop_in_epoch_two() -> bool:
        nonlocal polls
        polls += 1
        return polls > 24 + 1 + 5  # epoch 1: 24 batches and a test pass; then 5 into epoch 2

    done = []
    with pytest.raises(TrainingStopped):
        done.extend(training(spec, tmp_path / "b").epochs(stop_in_epoch_two))
    assert [r.epoch for r in done] == [1]
    resumed = list(training(spec, tmp_path / "b", epochs_done=1).epochs())
    assert [numbers(r) for r in done + resumed] == [numbers(r) for r in undisturbed]
    assert all(r.no_gradient for r in resumed)


def test_bfloat16_autocast_keeps_float32_master_weights_and_counts_the_causes(tmp_path):
    spec = RunSpec(**SPEC | {"epochs": 2}, autocast="bfloat16")
    engine = training(spec, tmp_path)
    records = list(engine.epochs())
    assert engine.numerics["dtype"] == "float32" and engine.numerics["autocast"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in engine._model.parameters())
    for r in records:
        assert all(
            e <= n <= u for u, n, e in zip(r.unchanged, r.no_gradient, r.explained, strict=True)
        )
    # Not the float32 run: the forward pass really ran in bfloat16.
    plain = list(
        training(RunSpec(**SPEC | {"epochs": 2, "causes": False}), tmp_path / "plain").epochs()
    )
    assert records[0].train_loss != plain[0].train_loss
    # Without causes (the default) nothing is counted, the rest is measured as ever.
    assert all(r.no_gradient == [] and r.unchanged for r in plain)


def test_the_spec_refuses_autocast_over_float64(client):
    answer = client.post("/runs", json=SPEC | {"dtype": "float64", "autocast": "bfloat16"})
    assert answer.status_code == 422
    assert "needs dtype float32" in answer.text
    answer = client.post("/runs", json=SPEC | {"dtype": "float16", "autocast": "float16"})
    assert answer.status_code == 422
    assert {tuple(e["loc"]) for e in answer.json()["detail"]} == {
        ("body", "dtype"),
        ("body", "autocast"),
    }
    assert client.get("/runs").json()["total"] == 0


# --- the store and the view ---


def csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.backends("sqlite", "postgresql")
def test_causes_view_json_csv_png_from_real_training(client, db, settings):
    """Trained by the worker and stored; JSON, CSV and PNG read back the engine's exact counts."""
    run_id = client.post("/runs", json=SPEC | {"epochs": 3, "dtype": "float64"}).json()["id"]
    Worker(settings, db).run(exit_when_idle=True)
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["numerics"]["dtype"] == "float64"
    view = client.get(f"/runs/{run_id}/causes").json()
    units = client.get(f"/runs/{run_id}/units").json()
    assert view["run_id"] == run_id and view["epochs"] == units["epochs"] == [1, 2, 3]
    assert [(w["layer"], w["name"], w["parameters"]) for w in view["weights"]] == [
        (w["layer"], w["name"], w["parameters"]) for w in units["weights"]
    ]
    for weights, unit in zip(view["weights"], units["weights"], strict=True):
        assert weights["constant"] == unit["constant"]
        assert weights["in_dead_unit"] == unit["explained"]
        assert [n + r for n, r in zip(weights["no_gradient"], weights["rounded"], strict=True)] == (
            weights["constant"]
        )
    table = csv_rows(client.get(f"/runs/{run_id}/causes", params={"format": "csv"}).text)
    assert tuple(table[0]) == CAUSES_COLUMNS
    assert [
        (int(r["epoch"]), int(r["layer"]), int(r["constant"]), int(r["no_gradient"]))
        + (int(r["in_dead_unit"]), int(r["rounded"]))
        for r in table
    ] == [
        (e, w["layer"], c, n, d, r)
        for w in view["weights"]
        for e, c, n, d, r in zip(
            view["epochs"],
            w["constant"],
            w["no_gradient"],
            w["in_dead_unit"],
            w["rounded"],
            strict=True,
        )
    ]
    png = client.get(
        f"/runs/{run_id}/causes", params={"format": "png", "width": 600, "height": 450}
    )
    assert png.headers["content-type"] == "image/png"
    assert_drawn(png.content, SMALL)
    assert client.get(f"/runs/{run_id}/causes.png").content.startswith(b"\x89PNG")


def test_causes_view_reads_the_stored_counts(client, play, tiny_spec):
    played = play(tiny_spec(hidden_sizes=[8, 4]), 3, parameters=(96, 32, 40), mechanism=True)
    view = client.get(f"/runs/{played.run_id}/causes").json()
    assert view["epochs"] == [1, 2, 3]
    for i, weights in enumerate(view["weights"]):
        assert weights["constant"] == [r.unchanged[i] for r in played.epochs]
        assert weights["no_gradient"] == [r.no_gradient[i] for r in played.epochs]
        assert weights["in_dead_unit"] == [r.explained[i] for r in played.epochs]
        assert weights["rounded"] == [r.unchanged[i] - r.no_gradient[i] for r in played.epochs]


def test_runs_stored_before_the_causes_answer_404_saying_why(client, play, tiny_spec):
    mechanism = play(tiny_spec(hidden_sizes=[8]), 2, parameters=(96, 80), mechanism=True)
    # As an engine before the causes stored it: dead units and explained, no no_gradient.
    older = play(tiny_spec(hidden_sizes=[8]), 2, parameters=(96, 80), mechanism=True, causes=False)
    plain = play(tiny_spec(hidden_sizes=[8]), 2, parameters=(96, 80))
    assert client.get(f"/runs/{mechanism.run_id}/causes").status_code == 200
    for run_id in (older.run_id, plain.run_id):
        answer = client.get(f"/runs/{run_id}/causes")
        assert answer.status_code == 404
        assert "submit it again with causes true" in answer.json()["detail"]
    assert client.get("/runs/999/causes").status_code == 404
    queued = client.post("/runs", json=tiny_spec()).json()["id"]
    assert client.get(f"/runs/{queued}/causes").json() == {
        "run_id": queued,
        "epochs": [],
        "weights": [],
    }
    assert client.get(f"/runs/{queued}/causes", params={"format": "png"}).status_code == 200


@pytest.mark.backends("sqlite", "postgresql")
def test_migration_0006_adds_no_gradient_and_back(db_url):
    config = alembic_config(db_url)
    command.upgrade(config, "0005")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, status, spec, epochs_done, created_at, attempts,"
                " cancel_requested) VALUES (1, 'succeeded', '{}', 1, :now, 1, false)"
            ),
            {"now": datetime(2026, 12, 1)},
        )
        conn.execute(text("INSERT INTO explained_counts VALUES (1, 1, 0, 50, 20)"))
    command.upgrade(config, "0006")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT * FROM explained_counts")).all() == [
            (1, 1, 0, 50, 20, None)
        ]
        conn.execute(text("INSERT INTO explained_counts VALUES (1, 2, 0, 40, 10, 30)"))
    command.downgrade(config, "0005")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM explained_counts ORDER BY epoch")).all()
    assert rows == [(1, 1, 0, 50, 20), (1, 2, 0, 40, 10)]
    engine.dispose()


def test_limits_count_float64_at_eight_bytes():
    single = estimate(RunSpec(**SPEC, keep_snapshots=True))
    double = estimate(RunSpec(**SPEC, keep_snapshots=True, dtype="float64"))
    assert double.disk_bytes == 2 * single.disk_bytes
    assert single.memory["hidden_sizes"] < double.memory["hidden_sizes"]
    assert double.memory["train_size"] == single.memory["train_size"]  # pixels stay uint8
    assert double.memory["batch_size"] == 2 * single.memory["batch_size"]
    autocast = estimate(RunSpec(**SPEC, autocast="bfloat16"))
    assert autocast.memory_bytes > estimate(RunSpec(**SPEC)).memory_bytes


@pytest.mark.slow  # real API and worker processes
def test_the_client_the_cli_and_the_run_page_show_the_causes_of_real_processes(processes, tmp_path):
    """Client.causes() (the CSV twin as a DataFrame) and `decaylab export --view causes` hold
    the JSON view's exact counts; the run page shows the panel for a run that counted them."""
    processes.start_server()
    processes.start_worker()
    client = decaylab.Client(processes.url)
    spec = {"dataset": "synthetic", "hidden_sizes": [16], "train_size": 256, "test_size": 128}
    run = client.submit(spec, epochs=2, causes=True)
    (done,) = client.wait(run, progress=False)
    assert done.status == "succeeded", processes.logs()
    view = processes.api("GET", f"/runs/{run.id}/causes").json()
    frame = client.causes(run)
    for weight in view["weights"]:
        rows = frame[frame["name"] == weight["name"]].sort_values("epoch")
        for cause in ("constant", "no_gradient", "in_dead_unit", "rounded"):
            assert rows[cause].tolist() == weight[cause], (weight["name"], cause)
    out = tmp_path / "causes.csv"
    exported = subprocess.run(
        [sys.executable, "-m", "decaylab", "export", str(run.id), "--view", "causes", "-o", out],
        env=os.environ | {"DECAYLAB_URL": processes.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=CSV_DTYPES), frame)
    assert client.causes_png(run, width=600, height=450).png.startswith(b"\x89PNG")
    page = processes.api("GET", f"/ui/runs/{run.id}").text
    assert f"/runs/{run.id}/causes" in page and "Every exactly constant weight" in page
