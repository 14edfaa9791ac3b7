"""GET /runs/{id}/events: the stored epochs, each new one live, status changes, then the end.

Stored results come from a pretend worker (``play``) in the fast tests, from a real worker in
the slow one."""

import asyncio
import json
import random
import re
import threading
import time
from datetime import datetime

import httpx
import pytest
from conftest import random_epoch
from httpx_sse import connect_sse

from server.api.events import Broadcaster
from server.core.schemas import RunStatus
from server.processes import Processes
from server.store import jobs


def parse(text: str) -> list[tuple[str, dict]]:
    """(event, data) of each event of an SSE body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_a_finished_run_streams_its_epochs_then_ends(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=3).run_id
    response = client.get(f"/runs/{run_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "etag" not in response.headers
    events = parse(response.text)
    assert [kind for kind, _ in events] == ["epoch", "epoch", "epoch", "end"]
    metrics = client.get(f"/runs/{run_id}/metrics").json()
    constancy = client.get(f"/runs/{run_id}/constancy", params={"tol": 0}).json()
    for i, (_, data) in enumerate(events[:3]):
        assert data["epoch"] == i + 1 and data["run_id"] == run_id
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert data[key] == metrics[key][i]
        assert data["tolerance"] == 0
        assert data["constant_mean"] == constancy["mean"][i]
        assert data["constant_last_two_mean"] == constancy["last_two_mean"][i]
    assert events[-1][1] == {
        "run_id": run_id,
        "status": "succeeded",
        "epochs_done": 3,
        "epochs": 3,
        "error": None,
    }


def test_each_epoch_has_its_id_and_last_event_id_resumes_after_it(client, play, tiny_spec):
    run_id = play(tiny_spec(), epochs=3).run_id
    ids = re.findall(r"^id: (.*)$", client.get(f"/runs/{run_id}/events").text, re.M)
    assert ids == ["1", "2", "3"]
    resumed = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "2"})
    events = parse(resumed.text)
    assert [(kind, data.get("epoch")) for kind, data in events] == [("epoch", 3), ("end", None)]
    refused = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "two"})
    assert refused.status_code == 422 and "Last-Event-ID" in refused.text


def test_stopping_the_broadcaster_ends_every_open_stream_at_once(db, play, tiny_spec):
    """The server shutting down ends its streams (without ``end``), and any opened later."""
    run_id = play(tiny_spec(epochs=5), epochs=1, finish=None).run_id

    async def main() -> tuple[list[str], list[str]]:
        broadcaster = Broadcaster(db, interval=0.05)

        async def kinds() -> list[str]:
            return [e.kind async for e in broadcaster.listen(run_id)]

        task = asyncio.create_task(kinds())
        await asyncio.sleep(0.3)
        broadcaster.stop(asyncio.get_running_loop())
        seen = await asyncio.wait_for(task, timeout=2)
        later = await asyncio.wait_for(kinds(), timeout=2)
        await broadcaster.close()
        return seen, later

    seen, later = asyncio.run(main())
    assert seen == ["epoch", "status"] and later == []


def test_an_unknown_run_is_404_before_any_stream(client):
    response = client.get("/runs/42/events")
    assert response.status_code == 404 and "42" in response.json()["detail"]


def test_many_listeners_share_one_poll_per_interval(db, play, tiny_spec):
    """40 listeners of two runs: every one gets every epoch and the end, while the database
    sees one progress query per interval (not one per listener)."""
    played = [play(tiny_spec(epochs=4), epochs=2, finish=None, seed=s) for s in (1, 2)]
    interval = 0.05

    def worker_stores_the_rest() -> None:
        for p in played:
            for epoch in (3, 4):
                time.sleep(0.1)
                result = random_epoch(random.Random(epoch), epoch, p.tensors, 4)
                with db.write() as session:
                    jobs.record_epoch(session, p.lease, result, lease_seconds=60)
            with db.write() as session:
                jobs.finish_run(session, p.lease, RunStatus.succeeded)

    async def listen(broadcaster: Broadcaster, run_id: int) -> list[tuple[str, dict]]:
        return [(e.kind, e.data.model_dump()) async for e in broadcaster.listen(run_id)]

    async def main() -> tuple[list[list[tuple[str, dict]]], int, float]:
        broadcaster = Broadcaster(db, interval=interval)
        start = time.monotonic()
        tasks = [
            asyncio.create_task(listen(broadcaster, p.run_id)) for p in played for _ in range(20)
        ]
        await asyncio.sleep(0.2)
        writer = threading.Thread(target=worker_stores_the_rest)
        writer.start()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        elapsed = time.monotonic() - start
        writer.join()
        await broadcaster.close()
        return results, broadcaster.polls, elapsed

    results, polls, elapsed = asyncio.run(main())
    for i, events in enumerate(results):
        run_id = played[i // 20].run_id
        assert [kind for kind, _ in events] == ["epoch"] * 2 + ["status"] + ["epoch"] * 2 + ["end"]
        assert [d["epoch"] for k, d in events if k == "epoch"] == [1, 2, 3, 4]
        assert {d["run_id"] for _, d in events} == {run_id}
        assert events[2][1]["status"] == "running" and events[-1][1]["status"] == "succeeded"
    # One query per interval for all 40 (plus the immediate polls new runs ask for).
    assert polls <= elapsed / interval + 4, (polls, elapsed)


@pytest.mark.slow
def test_events_arrive_live_from_a_real_worker_through_the_token(tmp_path, db_url, tiny_spec):
    processes = Processes(tmp_path, lease_seconds="2", database_url=db_url, api_token="s3cret")
    try:
        processes.start_server()
        # Long enough (tens of epochs) that "live" cannot be confused with "already finished".
        run_id = processes.api("POST", "/runs", json=tiny_spec(epochs=30)).json()["id"]
        refused = httpx.get(f"{processes.url}/runs/{run_id}/events", timeout=10)
        assert refused.status_code == 401

        received: list[tuple[str, dict, float]] = []
        with httpx.Client(base_url=processes.url, headers=processes.headers()) as http:
            with connect_sse(http, "GET", f"/runs/{run_id}/events", timeout=120) as source:
                processes.start_worker("--exit-when-idle")
                for sse in source.iter_sse():
                    received.append((sse.event, json.loads(sse.data), time.time()))
        run = processes.wait_finished(run_id)
    finally:
        processes.close()

    kinds = [kind for kind, _, _ in received]
    assert kinds[0] == "status" and received[0][1]["status"] == "queued"
    assert kinds[-1] == "end" and received[-1][1]["status"] == run["status"] == "succeeded"
    assert [d["epoch"] for k, d, _ in received if k == "epoch"] == list(range(1, 31))
    assert "running" in [d["status"] for k, d, _ in received if k == "status"]
    # Live: the first epoch's event came before the run had finished.
    first_epoch_at = next(at for kind, _, at in received if kind == "epoch")
    assert first_epoch_at < datetime.fromisoformat(run["finished_at"]).timestamp()
