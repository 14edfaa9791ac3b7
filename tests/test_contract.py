"""The OpenAPI document is the contract: Schemathesis, with every check, against a real API
(`processes`, its runs and sweep trained by a real worker) on SQLite and PostgreSQL; and a client
generated from the document by openapi-python-client that calls every operation, PNG, HTML,
binary and error answers included.

Both are bounded (a fixed seed, a fixed number of examples per operation) to stay within about a
minute each; `-m "not slow"` leaves them out."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.processes import Processes

pytestmark = [pytest.mark.slow, pytest.mark.backends("sqlite", "postgresql")]

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261125
EXAMPLES = 10
# What Schemathesis submits is trained by the real worker: limits keep each run small, and
# still admit the document's example spec (a small synthetic run, 2.1 M parameters).
SMALL = {
    "max_sweep_runs": "4",
    "max_parameters": "3000000",
    "max_memory_bytes": str(256 * 2**20),
    "max_run_disk_bytes": str(256 * 2**20),
}
TINY = {"dataset": "synthetic", "hidden_sizes": [16], "train_size": 256, "test_size": 128}


def schemathesis(
    processes: Processes, out: Path, *extra: str, examples: int = EXAMPLES
) -> subprocess.CompletedProcess:
    """``st run`` on the document, read once (with the token, if any) into ``out``."""
    (out / "openapi.json").write_bytes(processes.api("GET", "/openapi.json").content)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        "openapi.json",
        "--url",
        processes.url,
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(examples),
        "--no-shrink",
        "--request-timeout",
        "30",
        # Every check, max_response_time too, but at the request timeout: a guard against a
        # hang, not a speed target (those are in benchmarks/); 10 s, its default, is a busy
        # machine's PNG.
        "--max-response-time",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(out),
        # The event stream lasts as long as its run: Schemathesis waits for a whole body, so each
        # case would only end at --request-timeout (the tool's limit, not the API's); its 404
        # and 422 are the run views' (tests/test_events.py covers the stream itself).
        "--exclude-path-regex",
        "/events$",
        *extra,
    ]
    env = processes.env | {
        "SCHEMATHESIS_HOOKS": "contract_hooks",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    }
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=out, env=env
    )


@pytest.fixture
def served(processes: Processes, tiny_spec, tmp_path: Path) -> Processes:
    """A real API, with one finished run (results, snapshots) and a finished sweep of two
    groups (weight decay 0 and 0.001) for the links, trained by a real worker that then stops:
    what the tests submit stays queued, so that no answer depends on how far a worker got (and
    no training slows the API down while Schemathesis times it)."""
    processes.env |= {f"DECAYLAB_{k.upper()}": v for k, v in SMALL.items()}
    processes.start_server()
    worker = processes.start_worker()
    run = processes.api("POST", "/runs", json=TINY | {"epochs": 2, "keep_snapshots": True})
    assert run.status_code == 201, run.text
    assert processes.wait_finished(run.json()["id"], timeout=120)["status"] == "succeeded"
    sweep = processes.api(
        # The original experiment's shape (four weight matrices, weight decay 0 and 0.001), so
        # that its reproduction answers too.
        "POST",
        "/sweeps",
        json={
            "base": TINY | {"epochs": 1, "hidden_sizes": [16, 16, 16]},
            "grid": {"weight_decay": [0, 0.001]},
        },
    )
    assert sweep.status_code == 201, sweep.text
    for member in sweep.json()["runs"]:
        assert processes.wait_finished(member["id"], timeout=120)["status"] == "succeeded"
    assert processes.stop(worker) == 0, processes.logs()
    return processes


def test_schemathesis_finds_nothing(served: Processes, tmp_path: Path):
    result = schemathesis(served, tmp_path)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    # Every operation but the event stream, and each one reached with data it could use: a
    # sweep view only ever answering 404 would be "Missing test data".
    selected, total = map(
        int, re.findall(r"Operations: +(\d+) selected / (\d+) total", result.stdout)[0]
    )
    assert selected == total - 1, result.stdout[:2000]
    assert "Missing test data" not in result.stdout, result.stdout[-12000:]


def test_schemathesis_without_the_token_finds_every_401_documented(processes, tmp_path):
    """With DECAYLAB_API_TOKEN set and no token sent, every answer but /health's is a 401."""
    processes.env["DECAYLAB_API_TOKEN"] = "s3cret"
    processes.start_server()
    result = schemathesis(processes, tmp_path, "--phases", "examples,coverage", examples=5)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]


# openapi-python-client decodes only the media types it knows; the document declares the PNGs
# as binary, and this tells the generator that image/png is bytes like application/octet-stream.
GENERATOR_CONFIG = {"content_type_overrides": {"image/png": "application/octet-stream"}}


def test_a_generated_client_calls_every_operation(served: Processes, tmp_path: Path):
    bin_dir = Path(sys.executable).parent
    document = served.api("GET", "/openapi.json")
    (tmp_path / "openapi.json").write_bytes(document.content)
    (tmp_path / "config.json").write_text(json.dumps(GENERATOR_CONFIG))
    generated = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.json",
            "--output-path",
            "decaylab_api",
            "--meta",
            "none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # Every response of the document made it into the client.
    assert "Warning" not in generated.stdout, generated.stdout
    finished = served.api("GET", "/runs?status=succeeded").json()["runs"][-1]["id"]
    sweep = served.api("GET", "/sweeps").json()["sweeps"][0]["id"]
    token = served.env.get("DECAYLAB_API_TOKEN", "")
    called = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "contract" / "call_every_operation.py"),
         str(tmp_path), served.url, str(finished), str(sweep), token],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert called.returncode == 0, called.stdout + called.stderr
    seen = json.loads(called.stdout.splitlines()[-1])
    assert {op for op, statuses in seen.items() if 404 in statuses} >= {
        "get_run",
        "get_report",
        "get_sweep",
        "get_sweep_difference",
    }
