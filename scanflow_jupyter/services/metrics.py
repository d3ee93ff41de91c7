"""Prometheus text metrics of one service: requests, errors, latency histogram, model version."""

from __future__ import annotations

import threading
from bisect import bisect_left

__all__ = ["BUCKETS_S", "Metrics"]

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters; `render()` gives the Prometheus text exposition format (0.0.4)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._errors: dict[str, int] = {}
        self._buckets = [0] * (len(BUCKETS_S) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, route: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            key = (route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            if status >= 400 and seconds is not None:  # prediction requests only (not probes)
                kind = "client" if status < 500 else "server"
                self._errors[kind] = self._errors.get(kind, 0) + 1
            if seconds is not None:
                self._buckets[bisect_left(BUCKETS_S, seconds)] += 1
                self._sum += seconds
                self._count += 1

    def render(self, *, version: str | None, loaded: bool, swaps: int) -> str:
        svc = f'service="{_label(self.service)}"'
        lines = ["# HELP scanflow_service_requests_total Requests by route and HTTP status.",
                 "# TYPE scanflow_service_requests_total counter"]
        with self._lock:
            for (route, status), n in sorted(self._requests.items()):
                lines.append(f'scanflow_service_requests_total{{{svc},route="{_label(route)}",status="{status}"}} {n}')
            lines += ["# HELP scanflow_service_errors_total Failed prediction requests (client: 4xx, server: 5xx).",
                      "# TYPE scanflow_service_errors_total counter"]
            for kind in ("client", "server"):
                lines.append(f'scanflow_service_errors_total{{{svc},kind="{kind}"}} {self._errors.get(kind, 0)}')
            lines += ["# HELP scanflow_service_predict_latency_seconds Latency of /predict.",
                      "# TYPE scanflow_service_predict_latency_seconds histogram"]
            cumulative = 0
            for bound, n in zip((*BUCKETS_S, float("inf")), self._buckets, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'scanflow_service_predict_latency_seconds_bucket{{{svc},le="{le}"}} {cumulative}')
            lines.append(f"scanflow_service_predict_latency_seconds_sum{{{svc}}} {self._sum!r}")
            lines.append(f"scanflow_service_predict_latency_seconds_count{{{svc}}} {self._count}")
        lines += ["# HELP scanflow_service_model_info The model version being served (value 1).",
                  "# TYPE scanflow_service_model_info gauge",
                  f'scanflow_service_model_info{{{svc},version="{_label(version or "")}"}} {1 if loaded else 0}',
                  "# HELP scanflow_service_model_swaps_total Hot swaps to a new model version.",
                  "# TYPE scanflow_service_model_swaps_total counter",
                  f"scanflow_service_model_swaps_total{{{svc}}} {swaps}"]
        return "\n".join(lines) + "\n"
