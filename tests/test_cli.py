"""The ``decaylab`` command line against real API and worker processes, and in a virtualenv
with nothing but the client's own dependencies."""

import json
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

import pandas as pd
import pytest

import decaylab
from decaylab.cli import SPEC_FIELDS
from server.core.schemas import RunSpec
from server.processes import Processes, free_port

ROOT = Path(__file__).resolve().parent.parent
# Long enough on the synthetic data (seconds) for the API to restart while it trains.
TINY_LONG = {
    "dataset": "synthetic",
    "hidden_sizes": [32],
    "train_size": 1024,
    "test_size": 128,
    "epochs": 20,
}


def decaylab_cli(
    *args: str, url: str = "", command: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``decaylab ARGS`` (``python -m decaylab`` unless ``command``) against ``url``."""
    env = os.environ | {"DECAYLAB_URL": url or "http://127.0.0.1:9"}
    env.pop("DECAYLAB_API_TOKEN", None)
    return subprocess.run(
        [*(command or (sys.executable, "-m", "decaylab")), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_submit_flags_are_the_spec_fields():
    assert [f.name for f in SPEC_FIELDS] == list(RunSpec.model_fields)
    for spec_field in SPEC_FIELDS:
        annotation = RunSpec.model_fields[spec_field.name].annotation
        assert (annotation is bool) == (spec_field.type.name == "boolean"), spec_field.name


def test_bad_flags_name_the_field_and_exit_2():
    result = decaylab_cli("submit", "--train-size", "many")
    assert result.returncode == 2 and "'--train-size'" in result.stderr
    result = decaylab_cli("submit", "--hidden-sizes", "512,x")
    assert result.returncode == 2 and "'--hidden-sizes'" in result.stderr
    result = decaylab_cli("compare", "1", "--scope", "middle")
    assert result.returncode == 2 and "'--scope'" in result.stderr


def test_an_unreachable_api_exits_5():
    result = decaylab_cli("ls")
    assert result.returncode == 5 and "cannot reach" in result.stderr


@pytest.mark.slow
def test_the_seed_pair_submitted_waited_for_exported_and_compared(processes, tmp_path):
    processes.start_server()
    processes.start_worker()
    url = processes.url
    flags = ["--dataset", "synthetic", "--hidden-sizes", "32"]
    flags += ["--train-size", "512", "--test-size", "256"]
    pair = ["--epochs", "3", "--weight-decay", "0", "--weight-decay", "0.001"]
    result = decaylab_cli("submit", *flags, *pair, "--wait", "--json", url=url)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["status"], r["epochs_done"], r["spec"]["weight_decay"]) for r in runs] == [
        ("succeeded", 3, 0),
        ("succeeded", 3, 0.001),
    ]
    assert [r["name"] for r in runs] == ["weight_decay=0", "weight_decay=0.001"]
    ids = [str(r["id"]) for r in runs]

    client = decaylab.Client(url=url)
    csv_file, parquet_file = tmp_path / "pair.csv", tmp_path / "pair.parquet"
    for fmt, path in (("csv", csv_file), ("parquet", parquet_file)):
        result = decaylab_cli("export", *ids, "--format", fmt, "-o", str(path), url=url)
        assert result.returncode == 0, result.stderr
    expected = pd.concat([client.constancy(i) for i in ids], ignore_index=True)
    from_csv = pd.read_csv(csv_file, dtype=decaylab.client.CSV_DTYPES)
    pd.testing.assert_frame_equal(from_csv, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_file), expected)
    metrics_file = tmp_path / "metrics.parquet"
    result = decaylab_cli(
        "export", *ids, "--view", "metrics", "--format", "parquet", "-o", str(metrics_file), url=url
    )
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(
        pd.read_parquet(metrics_file),
        pd.concat([client.metrics(i) for i in ids], ignore_index=True),
    )

    for view, read in (("units", client.units), ("spectrum", client.spectrum)):
        path = tmp_path / f"{view}.csv"
        result = decaylab_cli("export", *ids, "--view", view, "-o", str(path), url=url)
        assert result.returncode == 0, result.stderr
        pd.testing.assert_frame_equal(
            pd.read_csv(path, dtype=decaylab.client.CSV_DTYPES),
            pd.concat([read(i) for i in ids], ignore_index=True),
        )

    png = tmp_path / "compare.png"
    result = decaylab_cli("compare", *ids, "--scope", "last2", "--png", str(png), url=url)
    assert result.returncode == 0 and png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = decaylab_cli("compare", *ids, "--tol", "0", url=url)
    assert result.returncode == 0, result.stderr
    assert "tolerance 0: % of weights constant (mean of all layers)" in result.stdout
    assert f"run {ids[1]} (wd 0.001)" in result.stdout
    result = decaylab_cli("compare", *ids, "--tol", "0", "--scope", "1", "--json", url=url)
    rows = json.loads(result.stdout)
    assert {row["layer"] for row in rows} == {"1"} and len(rows) == 2 * 3

    result = decaylab_cli("ls", url=url)
    assert result.returncode == 0 and "succeeded" in result.stdout and "3/3" in result.stdout
    shown = decaylab_cli("show", ids[0], url=url).stdout
    assert re.search(r"^status +succeeded$", shown, re.M)
    assert re.search(r"^  weight_decay +0\.0$", shown, re.M)
    result = decaylab_cli("watch", *ids, "--json", url=url)
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 2

    # Refusals: exit codes and the API's detail, naming the field.
    result = decaylab_cli("submit", *flags, "--momentum", "1", url=url)
    assert result.returncode == 3 and "body.momentum" in result.stderr
    assert decaylab_cli("show", "999", url=url).returncode == 4
    assert decaylab_cli("cancel", ids[0], url=url).returncode == 3  # 409: it has finished
    assert decaylab_cli("compare", *ids, "--tol", "0.5", url=url).returncode == 4

    # A cancelled run makes --wait and watch exit 1.
    result = decaylab_cli("submit", *flags, "--epochs", "1000", "--json", url=url)
    queued = json.loads(result.stdout)[0]["id"]
    assert decaylab_cli("cancel", str(queued), url=url).returncode == 0
    assert decaylab_cli("watch", str(queued), url=url).returncode == 1
    result = decaylab_cli("rm", str(queued), "--json", url=url)
    assert result.returncode == 0 and json.loads(result.stdout) == {"deleted": [queued]}
    assert decaylab_cli("show", str(queued), url=url).returncode == 4


@pytest.mark.slow
def test_the_client_installs_and_works_without_the_server_dependencies(processes, tmp_path):
    """A fresh virtualenv with the project installed without extras: no torch, FastAPI or
    SQLAlchemy, yet the console script lists the runs of a real API."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    absent = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; "
            "print([m for m in ('torch', 'fastapi', 'sqlalchemy', 'numpy') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # numpy comes with pandas; the server's and the worker's packages do not.
    assert absent.stdout.strip() == "['numpy']"

    processes.start_server()
    processes.api("POST", "/runs", json={"name": "from elsewhere", "epochs": 1})
    script = (str(env_dir / "bin" / "decaylab"),)
    assert decaylab_cli("--help", command=script).returncode == 0
    result = decaylab_cli("ls", "--json", url=processes.url, command=script)
    assert result.returncode == 0, result.stderr
    assert [run["name"] for run in json.loads(result.stdout)] == ["from elsewhere"]


@pytest.mark.slow
def test_global_options_after_the_command_a_401_says_how_and_ls_and_show_read_well(tmp_path):
    processes = Processes(tmp_path, api_token="cli-s3cret")
    try:
        processes.start_server()
        url = processes.url
        refused = decaylab_cli("ls", url=url)
        assert refused.returncode == 3
        assert "set DECAYLAB_API_TOKEN or pass --token" in refused.stderr
        tiny = ["--dataset", "synthetic", "--epochs", "1", "--train-size", "64"]
        for wd in ("0", "0.001"):
            submitted = decaylab_cli(
                "submit", *tiny, "--weight-decay", wd, "--name", f"wd {wd}",
                "--token", "cli-s3cret", "--url", url,
            )  # fmt: skip
            assert submitted.returncode == 0, submitted.stderr
        listed = decaylab_cli("ls", "--token=cli-s3cret", url="http://127.0.0.1:9", command=())
        assert listed.returncode == 5  # --token after the command is taken, the URL is wrong
        listed = decaylab_cli("ls", "--url", url, "--token", "cli-s3cret")
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        # Names left-aligned under their header, weight decays as typed.
        name_at = header.index("name")
        assert [row[name_at:] for row in rows] == ["wd 0.001", "wd 0"]
        assert [row.split()[3] for row in rows] == ["0.001", "0"]
        shown = decaylab_cli("show", "1", "--token", "cli-s3cret", url=url).stdout
        assert re.search(r"^cancel_requested +false$", shown, re.M)
        assert re.search(r"^  keep_snapshots +false$", shown, re.M)
        assert re.search(r"^  test_size +null$", shown, re.M)
        assert "None" not in shown and "False" not in shown
    finally:
        processes.close()


@pytest.mark.slow
def test_watch_goes_on_across_an_api_restart_and_its_rate_counts_only_live_epochs(tmp_path):
    port = free_port()
    processes = Processes(tmp_path, lease_seconds="2")
    try:
        api = processes.start_server(port=port)
        url = processes.url
        run_id = processes.api("POST", "/runs", json=TINY_LONG).json()["id"]
        env = os.environ | {"DECAYLAB_URL": url}
        watch = subprocess.Popen(
            [sys.executable, "-m", "decaylab", "watch", str(run_id), "--json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        processes.start_worker()
        running = processes.wait_for_run(run_id, lambda r: r["epochs_done"] >= 1, timeout=300)
        assert running["epochs_done"] < TINY_LONG["epochs"]  # mid-run
        processes.stop(api)
        time.sleep(1)  # the client finds nobody there for a while
        processes.start_server(port=port)
        out, err = watch.communicate(timeout=600)
        assert watch.returncode == 0, err
        (run,) = json.loads(out)
        assert run["status"] == "succeeded" and run["epochs_done"] == TINY_LONG["epochs"]

        # Watching the finished run replays its epochs: no rate for them.
        again = decaylab_cli("watch", str(run_id), url=url)
        assert again.returncode == 0, again.stderr
        last = again.stderr.replace("\r", "\n").strip().splitlines()[-1]
        assert "?epoch/s" in last and not re.search(r"\d epoch/s|\depoch/s", last), last
    finally:
        processes.close()
