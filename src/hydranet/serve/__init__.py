"""Serving: a trained run behind HTTP (`hydranet serve`): JSON rows or images in, `predict`'s decoded answers out,
with dynamic batching, validation, Prometheus metrics and drift of the recent inputs.

FastAPI, uvicorn and prometheus_client are imported only by this package, which only `hydranet serve` loads.
"""
