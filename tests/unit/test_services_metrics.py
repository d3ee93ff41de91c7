"""Prometheus text of a service's metrics."""

from __future__ import annotations

from scanflow_jupyter.services.metrics import Metrics


def test_counters_errors_histogram_and_version() -> None:
    m = Metrics('a"b')
    m.observe("/predict", 200, 0.003)
    m.observe("/predict", 200, 0.2)
    m.observe("/predict", 422, 0.001)
    m.observe("/predict", 500, 20.0)
    m.observe("/health", 503)
    text = m.render(version="7", loaded=True, swaps=2)
    svc = 'service="a\\"b"'
    assert f'scanflow_service_requests_total{{{svc},route="/predict",status="200"}} 2' in text
    assert f'scanflow_service_errors_total{{{svc},kind="client"}} 1' in text
    assert f'scanflow_service_errors_total{{{svc},kind="server"}} 1' in text  # the 503 probe is no error
    assert f'scanflow_service_predict_latency_seconds_bucket{{{svc},le="0.001"}} 1' in text
    assert f'scanflow_service_predict_latency_seconds_bucket{{{svc},le="0.005"}} 2' in text
    assert f'scanflow_service_predict_latency_seconds_bucket{{{svc},le="10.0"}} 3' in text
    assert f'scanflow_service_predict_latency_seconds_bucket{{{svc},le="+Inf"}} 4' in text
    assert f"scanflow_service_predict_latency_seconds_count{{{svc}}} 4" in text
    assert f'scanflow_service_model_info{{{svc},version="7"}} 1' in text
    assert f"scanflow_service_model_swaps_total{{{svc}}} 2" in text
    assert text.endswith("\n")
