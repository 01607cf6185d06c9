"""`create_app(run, settings)`: the FastAPI app of one run — /predict, /health, /metadata, /metrics, /drift and the
OpenAPI docs at /docs. Request checks answer 4xx with one line naming the problem; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from hydranet.data.info import SEQUENCE, TEXT
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError
from hydranet.fairness.threshold import Thresholds
from hydranet.kinds.pixels import is_encoded_map
from hydranet.rundir import RunDir
from hydranet.serve.backend import load_backend
from hydranet.serve.batch import BatchAnswers
from hydranet.serve.batcher import MicroBatcher
from hydranet.serve.inputs import (JSON, MULTIPART, image_json_request, parse_json, sequence_body, table_body,
                                   uploaded_images)
from hydranet.serve.maps import requested_format, with_lists
from hydranet.serve.metrics import ServerMetrics
from hydranet.serve.settings import ServeSettings
from hydranet.serve.window import drift_window
from hydranet.tasks import Task
from hydranet.train.run import Run

ENDPOINTS = ("/predict", "/health", "/metadata", "/metrics", "/drift")
OPEN = ("/health", "/docs", "/openapi.json")  # answered without the key: probes and the API's description
REASONS = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
           415: "unsupported_media_type", 422: "invalid_input", 500: "internal"}
ROWS_SCHEMA = {"type": "object", "required": ["rows"], "description": "table runs: one object per row with every "
               "trained column (null: missing); text runs: every text column, a string",
               "properties": {"rows": {"type": "array", "items": {"type": "object"}}}}
BASE64_SCHEMA = {"type": "object", "required": ["images"], "description": "image runs: image files in base64",
                 "properties": {"images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}}
SEQUENCES_SCHEMA = {"type": "object", "required": ["sequences"], "description": "numeric-sequence runs: per sequence "
                    "its steps (at most the trained number), per step the trained number of features",
                    "properties": {"sequences": {"type": "array", "items": {"type": "array", "items": {
                        "type": "array", "items": {"type": "number"}}}}}}
UPLOAD_SCHEMA = {"type": "object", "description": "image runs: image files, any field name", "properties": {
    "images": {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}}}}
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    JSON: {"schema": {"oneOf": [ROWS_SCHEMA, BASE64_SCHEMA, SEQUENCES_SCHEMA]}}, MULTIPART: {"schema": UPLOAD_SCHEMA}}}}


class Service:
    """What one server (or one worker of a server) holds: the run, its backend, the batcher, the drift window and
    the metrics. `shared`: the folder where the workers of `serve --workers N` pool their metrics and windows."""

    def __init__(self, run: Run, settings: ServeSettings, shared: Path | None = None):
        self.run, self.settings, self.key = run, settings, settings.api_key()
        self.backend = load_backend(run, settings.backend)
        self.metrics = ServerMetrics(shared)
        self.thresholds = Thresholds.of(run)  # fairness thresholds (`hydranet threshold`), applied as `predict` does
        self.window = drift_window(run, self.backend, settings.window, shared)
        self.sensitive = tuple(run.config.fairness.sensitive) if self.thresholds is not None else ()
        answers = BatchAnswers(run, self.backend, self.window, self.metrics, self.thresholds, self.sensitive)
        self.batcher = MicroBatcher(answers, settings.max_batch, settings.max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The batcher's worker runs while the app does; at shutdown (after the server let in-flight requests
        finish) it answers what is still queued."""
        self.batcher.start()
        yield
        await self.batcher.close()

    async def predict(self, request: Request) -> Response:
        """The answer's JSON body, made in the batcher's thread with the rest of its batch (its per-pixel maps
        turned into nested lists in a thread of their own when `?format=json` asks)."""
        fmt = requested_format(dict(request.query_params))
        body = await read_body(request, self.settings.max_body_bytes)
        answer = await self.batcher.submit(await self.request_inputs(request, body))
        if fmt == "json":
            answer = await asyncio.to_thread(with_lists, answer)
        return Response(answer, media_type=JSON)

    async def request_inputs(self, request: Request, body: bytes) -> list[Any]:
        """The body's image files, table rows or sequences, its shape checked here on the event loop (cheap);
        decoding the images, cleaning the rows and standardizing the sequences is left to the batcher's thread, once
        per request there (`BatchAnswers`)."""
        info, media = self.run.info, media_type(request)
        accepted = (JSON, MULTIPART) if info.is_image else (JSON,)
        if media not in accepted:
            raise HTTPException(415, f"Content-Type: {media or 'none'} is not accepted (expected "
                                     f"{' or '.join(accepted)})")
        if media == MULTIPART:
            return uploaded_images(await uploaded_files(request, body))
        parsed = parse_json(body)
        if info.is_image:
            return image_json_request(parsed)
        if info.kind == SEQUENCE:
            return sequence_body(info, parsed)
        return table_body(info, parsed, self.sensitive)

    def metadata(self) -> dict[str, Any]:
        tasks = {name: {"kind": task.kind, "classes": task.info.classes, "column": task.column_name,
                        **per_pixel_answer(task, self.run.info.size)} for name, task in self.run.tasks.items()}
        return {"run": RunDir.open(self.run.dir).identity(), "backend": self.backend.name, "tasks": tasks,
                "input": input_schema(self.run), "batching": {"max_batch": self.settings.max_batch,
                                                              "max_wait_ms": self.settings.max_wait_ms},
                "max_body_mb": self.settings.max_body_mb}

    async def drift(self) -> dict[str, Any]:
        """The window's drift report, computed in a thread on a snapshot of the window; the drift gauges follow it."""
        report = await asyncio.to_thread(self.window.drift, self.window.snapshot())
        if report["ready"]:
            self.metrics.set_drift(report)
        return report

    def authorized(self, request: Request) -> bool:
        """No key set, an open path, or the key as `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
        if self.key is None or request.url.path in OPEN:
            return True
        bearer = request.headers.get("authorization", "")
        given = bearer[7:] if bearer.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        return hmac.compare_digest(given.encode(), self.key.encode())


def create_app(run: Run, settings: ServeSettings, shared: Path | None = None) -> FastAPI:
    """The app serving `run` (its backend loaded, and the drift reference predicted, before this returns); `shared`:
    as `Service` takes it."""
    refuse_unservable(run)
    service = Service(run, settings, shared)
    app = FastAPI(title=f"hydranet: {run.config.name}", lifespan=service.lifespan,
                  description="Predictions of a hydranet run; answers equal `hydranet predict`'s.")
    app.state.service = service

    @app.exception_handler(UserError)
    async def invalid_input(request: Request, err: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    app.add_middleware(GuardAndCount, service=service)

    @app.post("/predict", openapi_extra=PREDICT_BODY, response_class=JSONResponse)
    async def predict(request: Request) -> Response:
        """Per row, per task: classification {label, probabilities}, binary {label, probability of the positive
        class}, multilabel {labels, probabilities}, regression {value} in the target's units; per-pixel tasks their
        map ({"png"| "npy": base64}, or nested lists with ?format=json) and, with classes, their pixel shares."""
        service.metrics.in_progress.inc()
        try:
            return await service.predict(request)
        finally:
            service.metrics.in_progress.dec()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "model_loaded": True, "backend": service.backend.name}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """The run, its tasks (kind, classes) and the input schema, the backend and the batching settings."""
        return service.metadata()

    @app.get("/drift")
    async def drift() -> dict[str, Any]:
        """Drift of the recent rows against the run's train split, per input column (table runs), image feature
        (mean and std of each channel), text feature (tokens, unknown-token rate) or sequence feature (steps, each
        feature's mean and std), and per task."""
        return await service.drift()

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format; the drift gauges are refreshed first."""
        await service.drift()
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app


def refuse_unservable(run: Run) -> None:
    """One line, before the server starts, for a run whose inputs or outputs the server does not handle."""
    run.info.require_image_or_table("hydranet serve", TEXT, SEQUENCE)


class GuardAndCount:
    """Refuses requests without the key (401) and counts every answer (status, latency, errors by reason). A plain
    ASGI middleware: Starlette's `@app.middleware("http")` runs each request in a task group of its own and relays
    the body through a stream, which cost more per request than the rest of the server's own work."""

    def __init__(self, app: ASGIApp, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, path, status = time.perf_counter(), scope["path"], 500  # 500 unless an answer starts
        endpoint = path if path in ENDPOINTS else "other"

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.service.authorized(Request(scope)):
                await self.app(scope, receive, counted)
            else:
                await UNAUTHORIZED(scope, receive, counted)
        finally:
            record(self.service.metrics, endpoint, status, start)


UNAUTHORIZED = JSONResponse({"detail": "unauthorized: send the key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})


def record(metrics: ServerMetrics, endpoint: str, status: int, start: float) -> None:
    metrics.requests.labels(endpoint, str(status)).inc()
    metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
    if status >= 400:
        metrics.errors.labels(endpoint, REASONS.get(status, str(status))).inc()


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it (or its declared length) passes `limit` bytes."""
    too_large = HTTPException(413, f"body: larger than the server's limit of {limit / 2 ** 20:g} MB (--max-body-mb)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def uploaded_files(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    """The files of a multipart body (already read under the size limit), named by their file names."""
    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream()).parse()
    except MultiPartException as err:
        raise UserError(f"body: not a readable multipart upload ({err.message})") from None
    return [(value.filename or name, await value.read()) for name, value in form.multi_items()
            if isinstance(value, UploadFile)]


def input_schema(run: Run) -> dict[str, Any]:
    """What /predict takes: the image size and channels, the text columns, a sequence's most steps and its
    features, or each column's kind (and known categories)."""
    info = run.info
    if info.kind == SEQUENCE:
        return {"kind": "sequence", "max_steps": info.input_shape[0], "features": info.input_shape[1] - 1,
                "format": 'application/json {"sequences": [[[f1, …, fF], …], …]}'}
    if info.kind == TEXT:
        return {"kind": "text", "columns": list(info.features), "separator": info.separator,
                "max_length": info.max_length, "format": 'application/json {"rows": [{column: text, …}, …]}'}
    if info.is_image:
        return {"kind": "image", "channels": info.channels, "size": list(info.size or ()),
                "formats": ["multipart/form-data files", 'application/json {"images": [base64, …]}']}
    columns = [{"name": c["name"], "kind": c["kind"], **({"categories": c["categories"]} if "categories" in c else {})}
               for c in TableEncoder.from_state(info.encoder).columns]
    return {"kind": "table", "columns": columns, "format": 'application/json {"rows": [{column: value, …}, …]}'}


def per_pixel_answer(task: Task, size: Any) -> dict[str, Any]:
    """What a dense task answers per image: the map's shape at the run's image size (the decoded output's, as
    `predict` writes it) and its encoding; {} for a task that answers per example."""
    if not task.dense:
        return {}
    raw = torch.zeros(1, *size, *([] if task.spec.squeeze else [task.info.outputs]))
    (answer,) = task.answers(raw)
    key, encoded = next((key, value) for key, value in answer.items() if is_encoded_map(value))
    return {"map": {"key": key, "shape": list(task.decode(raw).shape[1:]), "encoding": next(iter(encoded))}}
