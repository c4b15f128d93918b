"""Prometheus metrics of one service, in its own registry (two services in one
process do not share counters: no global state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the app)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """requests by route and status code, request latency, rows per attribute call
    (batch size), requests per call, compute time per call, queue depth (rows waiting)
    and readiness."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("pathattr_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=r)
        self.latency = Histogram("pathattr_request_latency_seconds", "Time from request received to response, by route",
                                 ["route"], buckets=_LATENCY, registry=r)
        self.batch_size = Histogram("pathattr_batch_size", "Instances (rows) attributed together in one Explainer call",
                                    buckets=_SIZES, registry=r)
        self.batch_requests = Histogram("pathattr_batch_requests", "Requests merged into one Explainer call",
                                        buckets=_SIZES, registry=r)
        self.compute = Histogram("pathattr_batch_compute_seconds", "Time of one Explainer call",
                                 buckets=_LATENCY, registry=r)
        self.queue_depth = Gauge("pathattr_queue_depth", "Instances waiting for the worker", registry=r)
        self.ready = Gauge("pathattr_ready", "1 once warm-up has finished", registry=r)
        self.deadline_exceeded = Counter("pathattr_deadline_exceeded", "Requests refused or dropped at their deadline",
                                         registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
