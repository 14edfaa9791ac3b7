"""What a bucket costs: a checkpoint per epoch to the local disk against an S3 bucket, and the
bucket's upload and download throughput.

    .venv/bin/python benchmarks/bench_artifacts.py [--epochs N] [--quick]

The run files of the seed-sized run (MLP 3072-512-512-512-10, SGD with momentum, keep_snapshots)
are written by the engine's own ``Training._save`` for N epochs: the checkpoint (model and
momentum, ~16 MiB), the kept-checkpoint rule, and the snapshot (~8 MiB). Once into a local
directory, once into a bucket. The bucket is moto's S3 server started here on a free port (what the
tests use) unless AWS_ENDPOINT_URL and DECAYLAB_ARTIFACT_URL name a real one (MinIO, S3).
Then one object of --megabytes is put and got a few times through the same client (obstore).
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import obstore

from server.core.runfiles import RunFiles, open_bucket
from server.core.schemas import RunSpec
from server.processes import free_port, wait_for
from worker.engine.train import Training


@contextmanager
def bucket_url() -> Iterator[str]:
    """DECAYLAB_ARTIFACT_URL if set, else a fresh bucket on a moto server of our own."""
    if os.environ.get("DECAYLAB_ARTIFACT_URL"):
        yield os.environ["DECAYLAB_ARTIFACT_URL"]
        return
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(f"{endpoint}/moto-api/"), 60, "moto_server")
        os.environ |= {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        name = f"bench-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
        yield f"s3://{name}/bench"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code > 0
    except httpx.TransportError:
        return False


def timed(action: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def checkpoint_seconds(files: RunFiles, data_dir: Path, epochs: int) -> list[float]:
    """Seconds of ``Training._save`` (checkpoint, kept-checkpoint rule, snapshot) per epoch,
    after one short epoch of training (so that the optimizer's momentum is in the checkpoint)."""
    spec = RunSpec(
        dataset="synthetic", epochs=1, train_size=256, test_size=128, keep_snapshots=True
    )
    training = Training.fresh(spec, files, data_dir=data_dir)
    for _ in training.epochs():
        pass
    seconds = []
    for epoch in range(2, epochs + 2):
        started = time.perf_counter()
        training._save(epoch)
        seconds.append(time.perf_counter() - started)
    return seconds


def describe(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:>6}: median {statistics.median(ms):7.1f} ms, fastest {min(ms):7.1f} ms"
        f" over {len(ms)} epochs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="3 epochs, a 16 MiB object")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.megabytes = 3, 16
    with tempfile.TemporaryDirectory() as tmp, bucket_url() as url:
        root = Path(tmp)
        local = checkpoint_seconds(RunFiles(root / "local"), root, args.epochs)
        bucket = open_bucket(url, 60.0)
        remote_files = RunFiles(root / "staging", bucket, "runs/1")
        remote = checkpoint_seconds(remote_files, root, args.epochs)
        objects = bucket.keys("runs/1")
        print(f"bucket {url} at {os.environ.get('AWS_ENDPOINT_URL', 'AWS')}")
        for kind in ("checkpoints", "snapshots"):
            sizes = [size / 2**20 for key, size in objects if f"/{kind}/" in key]
            print(f"{kind} kept: {len(sizes)} of {statistics.mean(sizes):.1f} MiB each")
        print("checkpoint + snapshot per epoch (Training._save):")
        print(describe("disk", local))
        print(describe("bucket", remote))
        extra = statistics.median(remote) - statistics.median(local)
        print(f"the bucket adds {extra * 1000:.1f} ms per epoch (medians)")

        payload = os.urandom(args.megabytes << 20)
        key = "throughput/object.bin"
        up = timed(lambda: obstore.put(bucket.store, key, payload), 3)
        down = timed(lambda: obstore.get(bucket.store, key).bytes(), 3)
        bucket.delete([key])
        remote_files.remove()
        for name, seconds in (("upload", up), ("download", down)):
            rate = args.megabytes / min(seconds)
            print(f"{name:>8}: {rate:7.1f} MiB/s (best of 3, {args.megabytes} MiB object)")


if __name__ == "__main__":
    main()
