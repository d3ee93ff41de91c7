"""Local serving of `%%service` cells: `scanflow serve` (foreground) and `scanflow services up|down|ls`.

Modules: `spec` (what a service cell serves), `schema` (request validation for custom cells and
MLflow scoring payloads), `loading` (the served model and its hot swap), `metrics` (Prometheus
text), `inference_log` (sampled, rotated parquet log), `app` (the HTTP app), `server` (the
service process) and `supervisor` (background services, restarted on crash).
"""
