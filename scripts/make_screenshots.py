"""Screenshots of the browser UI for the README and docs/ui.md: docs/img/ui-runs.png, ui-run.png,
ui-compare.png, ui-sweep.png.

Starts `python -m server` and `python -m worker` on a temporary data directory (with
server/processes.Processes, as the tests and `make figures` do), trains the seed's pair of runs
(weight decay 0 and 0.001) on small synthetic data, and photographs the runs list, the first
run's page and their comparison in Chromium (Debian's `chromium`, driven by Playwright); then a
small sweep (weight decay 0, 1e-4, 1e-3 × 3 seeds, half the epochs) for the sweep page."""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from server.processes import Processes

ROOT = Path(__file__).resolve().parent.parent

WEIGHT_DECAYS = (0.0, 0.001)
# The sweep page's small sweep: weight decays × seeds, on less data than the pair.
SWEEP_GRID = {"weight_decay": [0, 0.0001, 0.001], "seed": [0, 1, 2]}
SWEEP_BASE = {"dataset": "synthetic", "train_size": 1000, "test_size": 500, "hidden_sizes": [64]}
# Full-page shots: as tall as each page, at least this.
VIEWPORT = {"width": 1440, "height": 520}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    spec = {"dataset": "synthetic", "epochs": args.epochs, "train_size": 2000, "test_size": 500}
    with tempfile.TemporaryDirectory(prefix="decaylab-screens-") as root:
        procs = Processes(Path(root), database_url="")
        try:
            procs.start_server()
            procs.start_worker()
            ids = []
            for decay in WEIGHT_DECAYS:
                name = "baseline" if decay == 0 else "weight decay"
                run = procs.api("POST", "/runs", json=spec | {"name": name, "weight_decay": decay})
                ids.append(run.raise_for_status().json()["id"])
            for run_id in ids:
                if procs.wait_finished(run_id, timeout=1800)["status"] != "succeeded":
                    raise SystemExit(f"run {run_id} did not succeed{procs.logs()}")
            shoot(procs.url, ids, args.out)
            # The sweep after the pair's shots, so that the runs list shows the pair alone.
            body = {"name": "weight decay × 3 seeds", "grid": SWEEP_GRID}
            body["base"] = SWEEP_BASE | {"epochs": max(2, args.epochs // 2)}
            swept = procs.api("POST", "/sweeps", json=body).raise_for_status().json()
            for run in swept["runs"]:
                if procs.wait_finished(run["id"], timeout=1800)["status"] != "succeeded":
                    raise SystemExit(f"run {run['id']} did not succeed{procs.logs()}")
            shoot_pages(procs.url, {"ui-sweep.png": f"/ui/sweeps/{swept['id']}"}, args.out)
        finally:
            procs.close()
    return 0


def shoot(url: str, ids: list[int], out: Path) -> None:
    pages = {
        "ui-runs.png": "/ui/runs",
        "ui-run.png": f"/ui/runs/{ids[0]}",
        "ui-compare.png": "/ui/compare?runs=" + ",".join(map(str, ids)),
    }
    shoot_pages(url, pages, out)


def shoot_pages(url: str, pages: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        page = browser.new_page(viewport=VIEWPORT)
        for name, path in pages.items():
            page.goto(url + path, wait_until="networkidle")
            if name == "ui-runs.png":  # the pair ticked, ready to compare
                for box in page.get_by_role("checkbox").all():
                    box.check()
            page.screenshot(path=out / name, full_page=True)
            print(f"make_screenshots: wrote {out / name}", file=sys.stderr)
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
