"""`hydranet serve` as a real process on a loopback port: valid and malformed requests over HTTP, answers equal to
`hydranet predict`'s for a table run and an image run (multipart and base64), and a graceful SIGTERM: the request in
flight still gets its answer and the process exits 0."""

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from tests.serve.servehelpers import GOOD, assert_same_as_predict, json_rows, png

from tests.export.exportruns import table_frame
from tests.ports import free_port

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT_S = 180  # loading torch and the run on a busy shared machine; polled, so a fast start is not slowed
BATCH = 8  # a request of this many rows runs at once; a smaller one waits for others up to WAIT_MS
WAIT_MS = 3000


def start(run_dir: Path, port: int, *options: str, **env_vars: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           **env_vars}
    command = [sys.executable, "-m", "hydranet.cli", "serve", str(run_dir), "--port", str(port),
               "--max-batch", str(BATCH), "--max-wait-ms", str(WAIT_MS), *options]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(process: subprocess.Popen, url: str) -> None:
    """Poll /health until it answers; fail with the server's stderr if the process ends first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"no answer from {url}/health within {START_TIMEOUT_S} s")


def in_progress(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("hydranet_predict_in_progress ")))


@pytest.mark.slow
def test_serve_answers_as_predict_refuses_bad_requests_and_stops_gracefully(table_run, digits_run, cli, tmp_path):
    ports = free_port(), free_port()
    table_url, digits_url = (f"http://127.0.0.1:{port}" for port in ports)
    servers = [start(table_run, ports[0]), start(digits_run, ports[1])]
    try:
        wait_ready(servers[0], table_url)
        wait_ready(servers[1], digits_url)
        check_table(table_run, table_url, cli, tmp_path)
        check_images(digits_run, digits_url, cli, tmp_path)
        check_sigterm(servers[0], table_url)
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
                server.wait()


def check_table(run_dir: Path, url: str, cli, tmp_path: Path) -> None:
    rows = table_frame(BATCH, seed=7)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert cli("predict", run_dir, tmp_path / "rows.csv", "-o", tmp_path / "table.csv")[0] == 0
    columns = {task: meta["column"] for task, meta in httpx.get(f"{url}/metadata").json()["tasks"].items()}
    good = {"rows": json_rows(rows)}
    response = httpx.post(f"{url}/predict", json=good)
    assert response.status_code == 200
    assert_same_as_predict(response.json()["predictions"], tmp_path / "table.csv", columns)
    bad = [(dict(json={"rows": [{**GOOD, "shoe": 1}]}), 422, "'shoe'"),
           (dict(json={"rows": [{**GOOD, "x1": "one"}]}), 422, "'one' is not a number"),
           (dict(content=b"x1\n1\n", headers={"content-type": "text/csv"}), 415, "text/csv"),
           (dict(content=b"{" + b" " * 11 * 2 ** 20 + b"}", headers={"content-type": "application/json"}), 413,
            "--max-body-mb")]
    for request, status, words in bad:
        response = httpx.post(f"{url}/predict", **request)
        assert response.status_code == status and words in response.json()["detail"]
        assert httpx.post(f"{url}/predict", json=good).status_code == 200  # still serving


def check_images(run_dir: Path, url: str, cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = {f"{i}.png": png(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for i in range(BATCH)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert cli("predict", run_dir, *[tmp_path / n for n in files], "-o", tmp_path / "images.csv")[0] == 0
    columns = {task: meta["column"] for task, meta in httpx.get(f"{url}/metadata").json()["tasks"].items()}
    uploaded = httpx.post(f"{url}/predict", files=[("images", (n, d, "image/png")) for n, d in files.items()])
    encoded = httpx.post(f"{url}/predict", json={"images": [base64.b64encode(d).decode() for d in files.values()]})
    for response in (uploaded, encoded):
        assert response.status_code == 200
        assert_same_as_predict(response.json()["predictions"], tmp_path / "images.csv", columns)
    broken = httpx.post(f"{url}/predict", files=[("images", ("broken.png", b"\x89PNG broken", "image/png"))])
    assert broken.status_code == 422 and "broken.png: not a readable image" in broken.json()["detail"]


def check_sigterm(server: subprocess.Popen, url: str, requests: int = 1) -> None:
    """`requests` one-row requests, each on its own connection, wait in the batcher (up to WAIT_MS for company)
    when SIGTERM comes: every one is still answered."""
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict", json={"rows": [GOOD]},
                                                                         timeout=60))) for _ in range(requests)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while in_progress(url) < requests:
        assert time.monotonic() < deadline, "the requests never reached the server"
        time.sleep(0.05)
    server.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert [(a.status_code, len(a.json()["predictions"])) for a in answers] == [(200, 1)] * requests
    assert server.wait(60) == 0
    assert f"serving {Path(server.args[4])} on {url}" in server.stdout.read()
