"""Prometheus metrics on a registry the app owns (no module-level default registry).

With several uvicorn workers, prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set up by
``florence-tagger serve --workers N``) merges the workers' values at scrape time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "florence_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "florence_stage_seconds",
            "Latency of each caption stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.images_in_flight = Gauge(
            "florence_images_in_flight",
            "Images being downloaded or prepared now",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.vlm_bytes = Counter(
            "florence_vlm_image_bytes", "JPEG bytes sent to the VLM", registry=self.registry
        )
        self.passed_through = Counter(
            "florence_images_passed_through",
            "Images forwarded byte-identical (already within budget)",
            registry=self.registry,
        )

        self.cache = Counter(
            "florence_cache_requests",
            "POST /caption against the catalogue: hit, miss (computed), coalesced (joined one in flight)",
            ["outcome"],
            registry=self.registry,
        )

        self._events(self.registry)

    def _events(self, registry: CollectorRegistry) -> None:
        self.events_received = Counter(
            "florence_events_received",
            "Objects in S3 event deliveries: accepted (queued), or the reason they were ignored",
            ["outcome"],
            registry=registry,
        )
        self.events_processed = Counter(
            "florence_events_processed",
            "Queued events a worker finished: captioned, catalogued (already), gone, retry, failed",
            ["outcome"],
            registry=registry,
        )
        # The queue is one table shared by every process: any process's latest reading is the answer.
        self.events_queue = Gauge(
            "florence_events_queue",
            "Rows in the event queue by state (read at scrape time)",
            ["state"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.events_oldest_age = Gauge(
            "florence_events_oldest_age_seconds",
            "Age of the oldest event not yet captioned (failed ones aside); 0 when none",
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def observe_queue(self, counts: dict[str, int], oldest_age_s: float | None) -> None:
        for state, count in counts.items():
            self.events_queue.labels(state).set(count)
        self.events_oldest_age.set(oldest_age_s or 0.0)

    def observe_stages(self, stages_ms: dict[str, float]) -> None:
        for stage, ms in stages_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000)

    def render(self) -> bytes:
        if self._multiprocess_dir:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
