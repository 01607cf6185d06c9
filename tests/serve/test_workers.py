"""`hydranet serve --workers N`: the workers pool their drift windows (unit test on two windows sharing a folder)
and, as real processes on one port, /metrics and /drift count every worker's requests, the key is checked by each,
and SIGTERM stops them all gracefully, removing the server's temporary folder."""

import signal
from pathlib import Path

import httpx
import pandas as pd
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from tests.serve.servehelpers import GOOD, json_rows
from tests.ports import free_port
from tests.serve.test_server import check_sigterm, start, wait_ready

from tests.export.exportruns import table_frame
from hydranet.serve.window import SharedWindow

SIZE = 5


def window(folder: Path, worker: str) -> SharedWindow:
    """A window of one worker (named `worker`, as the real ones are named by their process id) over plain rows."""
    rows = lambda frames, x: [row for frame in frames for row in frame.to_dict("records")]  # noqa: E731
    shared = SharedWindow(folder, SIZE, pd.DataFrame(), pd.DataFrame(), [], rows, pd.DataFrame, pd.DataFrame, ["task"])
    shared.log = folder / f"window-{worker}.jsonl"
    return shared


def add(shared: SharedWindow, *values: int) -> None:
    """A batch of rows {"v": value} whose model input and raw output are the value itself."""
    x = torch.tensor(values, dtype=torch.float32)
    shared.add([pd.DataFrame({"v": values})], x, {"task": x})


def test_workers_pool_their_windows_and_keep_the_newest_rows(tmp_path):
    first, second = window(tmp_path, "1"), window(tmp_path, "2")
    add(first, 0, 1)
    add(second, 2, 3, 4)
    add(first, 5, 6)
    for shared in (first, second):  # either worker answers /drift over both workers' traffic
        inputs, outputs = shared.snapshot()()
        assert [row["v"] for row in inputs] == [2, 3, 4, 5, 6]
        assert [float(row["task"]) for row in outputs] == [2, 3, 4, 5, 6]
    with second.log.open("a") as log:  # a worker stopped in the middle of a line
        log.write('{"t": 1')
    for value in range(7, 7 + 4 * SIZE):  # each worker's log is rewritten, bounded, as it grows
        add(first, value)
    assert len(first.log.read_text().splitlines()) < 2 * SIZE
    assert [row["v"] for row in second.snapshot()()[0]] == list(range(2 + 4 * SIZE, 7 + 4 * SIZE))


def count(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels in Prometheus text."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.slow
def test_two_workers_count_and_track_drift_over_all_requests(table_run, tmp_path):
    port, key = free_port(), {"X-API-Key": "s3cret"}
    url, requests = f"http://127.0.0.1:{port}", 40
    server = start(table_run, port, "--workers", "2", "--max-batch", "64", "--max-wait-ms", "1", "--window", "100",
                   "--api-key-env", "WORKERS_KEY", WORKERS_KEY="s3cret", TMPDIR=str(tmp_path))
    try:
        wait_ready(server, url)
        rows = json_rows(table_frame(requests, seed=3))
        for row in rows:  # a new connection each: the two workers take them as they come
            with httpx.Client() as client:
                assert client.post(f"{url}/predict", json={"rows": [row]}, headers=key).status_code == 200
        assert httpx.post(f"{url}/predict", json={"rows": [GOOD]}).status_code == 401
        assert httpx.get(f"{url}/health").json() == {"ok": True, "model_loaded": True, "backend": "torch"}
        assert httpx.get(f"{url}/metadata", headers=key).json()["tasks"]["grade"]["kind"] == "classification"
        drift = httpx.get(f"{url}/drift", headers=key).json()
        assert drift["ready"] and drift["rows"] == requests
        text = httpx.get(f"{url}/metrics", headers=key).text
        assert count(text, "hydranet_requests_total", endpoint="/predict", status="200") == requests
        assert count(text, "hydranet_errors_total", endpoint="/predict", reason="unauthorized") == 1
        assert count(text, "hydranet_predictions_total", task="grade") == requests
        assert count(text, "hydranet_batch_rows_sum") == requests
        assert count(text, "hydranet_predict_in_progress") == 0
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
        assert "(2 workers)" in server.stdout.read()
        assert not list(tmp_path.glob("hydranet-serve-*"))  # the workers' metrics and windows are gone
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_sigterm_lets_the_workers_finish_their_requests_in_flight(table_run, tmp_path):
    """As one server does: four requests wait in the workers' batchers (up to 15 s for company) when SIGTERM comes,
    and every one is answered before the workers exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # a 15 s window (not the usual 3 s): under load, the four requests must all be waiting when SIGTERM comes,
    # and a first batch that closed before the fourth arrived would leave the test waiting for it in vain
    server = start(table_run, port, "--workers", "2", "--max-wait-ms", "15000", TMPDIR=str(tmp_path))
    try:
        wait_ready(server, url)
        check_sigterm(server, url, requests=4)
        assert not list(tmp_path.glob("hydranet-serve-*"))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
