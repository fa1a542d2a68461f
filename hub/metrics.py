"""Prometheus instruments shared by every package (exposed at /metrics by webhooks/)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from hub.schemas import utcnow

INGEST_REQUESTS = Counter("crmhub_ingest_requests_total", "Inbound webhook requests", ["connector", "outcome"])
INGEST_LATENCY = Histogram(
    "crmhub_ingest_seconds", "Time to verify and durably store an inbound request", ["connector"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_STORED = Counter("crmhub_events_stored_total", "Unified events stored", ["source", "type"])
EVENTS_QUARANTINED = Counter("crmhub_events_quarantined_total", "Inbound payloads quarantined", ["connector"])
EVENTS_FAILED = Counter("crmhub_raw_events_failed_total", "Raw events whose processing failed")
PROCESS_RETRIES = Counter("crmhub_process_retries_total", "Pipeline runs retried after a database conflict")
PROCESSING_LAG = Histogram(
    "crmhub_processing_lag_seconds", "Time from receipt to stored events", ["connector"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
DELIVERY_ATTEMPTS = Counter("crmhub_delivery_attempts_total", "Outbound delivery attempts", ["outcome"])
DELIVERY_LATENCY = Histogram(
    "crmhub_delivery_seconds", "Outbound delivery latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
QUEUE_DEPTH = Gauge("crmhub_queue_depth", "Rows waiting per stage", ["stage"])


def observe_lag(connector: str, received_at: datetime) -> None:
    PROCESSING_LAG.labels(connector).observe(max(0.0, (utcnow() - received_at).total_seconds()))
