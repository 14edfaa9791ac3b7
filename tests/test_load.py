"""Load, the short version: 20 clients, 1 s a phase, against real processes on SQLite: no
errors, and every phase (the /health floor, each read alone, the read mix, the mix) measured.

The long version (50 clients, 20 s a phase) is `python benchmarks/load_test.py`; its figures are
in docs/benchmarks.md. No timing is asserted: throughput and latencies depend on the machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real server and worker processes

ROOT = Path(__file__).resolve().parent.parent


def test_twenty_clients_in_every_phase_meet_no_error(tmp_path):
    out = tmp_path / "load.json"
    script = ROOT / "benchmarks" / "load_test.py"
    args = [sys.executable, str(script), "--clients", "20", "--seconds", "1", "--json", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["errors"] == 0 and result["database_locked"] == 0, result["error_examples"]
    assert result["requests"] >= 20
    # Every kind of request was made, writes (POST /runs) among them.
    kinds = result["by_kind"]
    assert {"POST /runs", "GET /runs/{id}", "constancy (training run)", "compare"} <= set(kinds)
    assert all(row["requests"] > 0 and row["errors"] == 0 for row in kinds.values())
    # Each phase's throughput beside the floor's (GET /health with the same clients).
    phases = result["throughput"]
    assert {"GET /health (floor)", "read mix", "mix", "constancy (training run)"} <= set(phases)
    assert phases["GET /health (floor)"]["share_of_floor"] == 1.0
    assert all(row["requests_per_second"] > 0 for row in phases.values())
