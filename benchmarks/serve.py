"""Load test of `hydranet serve`: requests per second, latency percentiles and errors under concurrent clients.

For each experiment (a table model, adult; an image model, seed-cnn) it trains a short run (serving speed does not
depend on how well the model learned), then for each backend (torch, onnx) starts `hydranet serve` as a subprocess
on loopback and drives it for `--seconds` with `--clients` concurrent clients, each sending one-example requests
back to back on its own keep-alive connection (a closed loop), with batching on (up to `--max-batch` rows gathered
for at most `--max-wait-ms`) and off (`--max-batch 1`); then with one client and batching off (batch-1 latency);
with batching on also with each of `--workers` (server processes on one port). The clients write pre-encoded raw
HTTP/1.1 over asyncio streams, so the load generator costs little of the cores it shares with the server. The
servers of one run are started together and driven in turn for `--rounds` rounds (interleaved, so a changing load
on a shared machine affects every setting alike). It reports per setting the median req/s, p50/p95/p99 latency,
the error count, the CPU time the load generator and the server (with its workers) used per second of wall time
and per request, and the load average. A table run also gets a breakdown of one request's time, each part timed
in-process; `--rows N` sends table requests of N rows each.

Prints one JSON line per setting and a table. Usage (from the repository root; adult and seed-cnn read
../shared/data):

    python benchmarks/serve.py [--experiments adult seed-cnn] [--clients 32] [--seconds 20] [--workers 1 2]
                               [--rounds 3] [--rows 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch

import hydranet as hn
from hydranet.data.build import load_raw
from hydranet.data.tabular import TableEncoder
from hydranet.data import to_model_inputs
from hydranet.serve.inputs import checked_frame, input_columns, table_request

sys.path.insert(0, str(Path(__file__).parent))
from export import cpu_name  # noqa: E402  (the export benchmark's helper)
from distributed import free_port  # noqa: E402  (the distributed benchmark's)

from hydranet.compress.profile import median_ms  # noqa: E402

SHORT_RUN = {"adult": {"train.epochs": 1}, "seed-cnn": {"train.epochs": 1, "data.limit": 2000}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its running descendants (the server's workers) have used so far
    (Linux /proc); a process that ended in between counts nothing."""
    total = 0.0
    for process in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    """The ids of the processes below `pid`, read from every process's parent id in /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class Server:
    """`hydranet serve` in a subprocess, ready when it prints its "serving" line (with `--workers`, once every
    worker listens); stopped with SIGTERM."""

    def __init__(self, run_dir: Path, backend: str, max_batch: int, max_wait_ms: float, workers: int = 1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "hydranet.cli", "serve", str(run_dir), "--port", str(self.port),
                   "--backend", backend, "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                   "--workers", str(workers)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        if not self.process.stdout.readline().startswith("serving "):
            self.process.wait()
            raise RuntimeError(f"hydranet serve exited: {self.process.stderr.read()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def example_bodies(run: hn.Model, count: int, rows: int = 1) -> list[dict[str, Any]]:
    """Request bodies from the run's own test rows or images (cycled by the clients): one image each, or `rows`
    table rows each."""
    raw = load_raw(run.config)
    if run.run.info.is_image:
        return [{"images": [png_base64(image)]} for image in raw.images[:count]]
    columns = [c["name"] for c in TableEncoder.from_state(run.run.info.encoder).columns]
    records = json.loads(raw.frame[columns].head(count * rows).to_json(orient="records"))
    return [{"rows": records[i:i + rows]} for i in range(0, len(records), rows)]


def png_base64(image: torch.Tensor) -> str:
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def raw_requests(bodies: list[dict]) -> list[bytes]:
    """Each body as a whole HTTP/1.1 POST /predict, encoded once: the clients then only write bytes."""
    requests = []
    for body in bodies:
        payload = json.dumps(body).encode()
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n")
        requests.append(head.encode() + payload)
    return requests


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One request on a keep-alive connection; the answer's status code (its body is read and dropped)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def drive(port: int, requests: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` closed-loop clients for `seconds`, each on its own keep-alive connection to `port`, written as raw
    HTTP/1.1 over asyncio streams (httpx took a core of the two to itself): latency of each answered request,
    errors by kind."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    status = await exchange(reader, writer, requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError) as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                i += clients
        finally:
            writer.close()

    begin = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return {"latencies": latencies, "errors": errors, "wall": time.perf_counter() - begin}


def measure(server: Server, requests: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """One drive of a running server (after a 1-second warm-up that is not counted): its latencies, errors, and the
    CPU seconds the server (with its workers) and this load generator used, with the load average at its start."""
    load_average = os.getloadavg()[0]
    asyncio.run(drive(server.port, requests, clients, min(1.0, seconds)))
    server_cpu, own_cpu = cpu_seconds(server.process.pid), time.process_time()
    result = asyncio.run(drive(server.port, requests, clients, seconds))
    return {**result, "load_average": load_average, "server_cpu": cpu_seconds(server.process.pid) - server_cpu,
            "own_cpu": time.process_time() - own_cpu}


def interleaved(run_dir: Path, bodies: list[dict], settings: list[tuple[str, int, int, int]],
                args: argparse.Namespace) -> list[dict]:
    """Every setting (backend, max_batch, clients, workers) of one run: all their servers started at once (an idle
    server costs no CPU), then driven in turn for `args.rounds` rounds, so a machine whose load changes affects
    every setting alike; per setting the median over rounds of req/s and CPU, the percentiles over all its
    latencies."""
    servers = [Server(run_dir, backend, max_batch, args.max_wait_ms, workers)
               for backend, max_batch, _, workers in settings]
    try:
        for server in servers:
            server.wait_ready()
        requests = raw_requests(bodies)
        drives: list[list[dict]] = [[] for _ in settings]
        for _ in range(args.rounds):
            for server, (_, _, clients, _), runs in zip(servers, settings, drives):
                runs.append(measure(server, requests, clients, args.seconds))
    finally:
        for server in servers:
            server.stop()
    return [summary(setting, runs, args) for setting, runs in zip(settings, drives)]


def summary(setting: tuple[str, int, int, int], runs: list[dict], args: argparse.Namespace) -> dict:
    """One setting's rounds: medians of the per-round rates, percentiles of all latencies."""
    backend, max_batch, clients, workers = setting
    latencies = np.concatenate([run["latencies"] for run in runs]) * 1000
    rate = [len(run["latencies"]) / run["wall"] for run in runs]
    median = lambda values: float(statistics.median(values))  # noqa: E731
    return {"backend": backend, "batching": max_batch > 1, "max_batch": max_batch, "max_wait_ms": args.max_wait_ms,
            "workers": workers, "clients": clients, "rounds": len(runs), "seconds": args.seconds,
            "load_average": median([run["load_average"] for run in runs]), "requests": len(latencies),
            "req_per_s": median(rate), "req_per_s_rounds": [round(r) for r in rate],
            "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "errors": sum(sum(run["errors"].values()) for run in runs),
            "server_cpu_per_s": median([run["server_cpu"] / run["wall"] for run in runs]),
            "server_cpu_ms_per_request": median([1000 * run["server_cpu"] / max(1, len(run["latencies"]))
                                                 for run in runs]),
            "loadgen_cpu_per_s": median([run["own_cpu"] / run["wall"] for run in runs])}


def table_breakdown(run_dir: Path, bodies: list[dict], args: argparse.Namespace) -> dict[str, float]:
    """Where one table request's time goes, each part timed alone in this process (median ms): the whole request,
    an HTTP round trip (/health), JSON parsing, the checks and encoding of a one-row request (`table_request`, on
    serve/onerow.py's plain-Python path), the same checks on the pandas path (`checked_frame`, which rows the
    plain path does not read take), the pandas encoding of 1 and of 64 such rows (once per batch), and the model on one row."""
    model = hn.load(run_dir)
    info = model.run.info
    payload = json.dumps(bodies[0]).encode()
    columns = input_columns(info)
    one = checked_frame(info, bodies[0]["rows"], columns)
    many = checked_frame(info, [body["rows"][0] for body in bodies[:64]], columns)
    x = to_model_inputs(info, frame=one)
    server = Server(run_dir, "torch", 1, args.max_wait_ms)
    try:
        server.wait_ready()
        with httpx.Client() as http:
            http_ms = median_ms(lambda: http.get(server.url + "/health"), 200, 20)
            request_ms = median_ms(lambda: http.post(server.url + "/predict", content=payload,
                                                     headers={"content-type": "application/json"}), 200, 20)
    finally:
        server.stop()
    with torch.inference_mode():
        model_ms = median_ms(lambda: model.run.model(x), 200, 20)
    return {"request_ms": request_ms, "http_health_ms": http_ms, "json_ms": median_ms(lambda: json.loads(payload), 200, 20),
            "one_row_ms": median_ms(lambda: table_request(info, json.loads(payload)), 200, 20),
            "pandas_check_ms": median_ms(lambda: checked_frame(info, json.loads(payload)["rows"], columns), 200, 20),
            "encode_1_ms": median_ms(lambda: to_model_inputs(info, frame=one), 200, 20),
            "encode_64_ms": median_ms(lambda: to_model_inputs(info, frame=many), 200, 20), "model_ms": model_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["adult", "seed-cnn"])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="server processes, batching on")
    parser.add_argument("--rounds", type=int, default=3, help="each setting driven this many times, interleaved")
    parser.add_argument("--rows", type=int, default=1, help="rows per table request")
    args = parser.parse_args()
    machine = {"machine": cpu_name(), "cpus": os.cpu_count(), "torch": torch.__version__}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for experiment in args.experiments:
            overrides = {**SHORT_RUN.get(experiment, {"train.epochs": 1}), "train.progress": False}
            run = hn.Experiment(experiment, overrides).fit(Path(tmp) / experiment)
            model = hn.load(run.dir)
            if "onnx" in args.backends:
                model.export()
            bodies = example_bodies(model, 256, args.rows)
            settings = [(backend, max_batch, clients, workers) for backend in args.backends
                        for max_batch, clients, workers in [*[(args.max_batch, args.clients, w) for w in args.workers],
                                                            (1, args.clients, 1), (1, 1, 1)]]
            for result in interleaved(run.dir, bodies, settings, args):
                rows.append({"experiment": experiment, **result})
                print(json.dumps({**machine, **rows[-1]}), flush=True)
            if not model.run.info.is_image:
                print(json.dumps({**machine, "experiment": experiment, "breakdown": table_breakdown(run.dir, bodies, args)}),
                      flush=True)
    print(f"\n{'experiment':<10} {'backend':<7} {'batching':<8} {'workers':>7} {'clients':>7} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} "
          f"{'errors':>6} {'server cpu':>10} {'cpu ms/req':>10} {'loadgen cpu':>11} {'load':>5}  (median of the rounds; "
          f"ms; cpu: cores busy; load: 1-min average)")
    for r in rows:
        print(f"{r['experiment']:<10} {r['backend']:<7} {'on' if r['batching'] else 'off':<8} {r['workers']:>7} "
              f"{r['clients']:>7} "
              f"{r['req_per_s']:>7.0f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6} "
              f"{r['server_cpu_per_s']:>10.2f} {r['server_cpu_ms_per_request']:>10.2f} {r['loadgen_cpu_per_s']:>11.2f} "
              f"{r['load_average']:>5.1f}")


if __name__ == "__main__":
    main()
