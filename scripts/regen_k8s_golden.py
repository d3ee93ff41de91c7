"""Regenerate the golden Kubernetes manifests: tests/golden/k8s/<case>.yaml.

Each case is a notebook plus deploy settings (fixed tracker image and, for `-external`, fake
credentials), turned into the multi-document YAML that `scanflow export --to k8s` writes.
tests/unit/test_k8s_manifests.py compares these files byte for byte: run this after an
intended change to the manifests, then review the diff.

    python scripts/regen_k8s_golden.py           # write the files
    python scripts/regen_k8s_golden.py --check   # exit 1 if any file is missing, stale or extra
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "k8s"

sys.path.insert(0, str(ROOT))

from scanflow_jupyter.kubernetes.config import DeployConfig  # noqa: E402
from scanflow_jupyter.kubernetes.manifests import build_manifests, to_yaml  # noqa: E402
from scanflow_jupyter.notebook.parser import parse_notebook  # noqa: E402

TRACKER_IMAGE = "ghcr.io/mlflow/mlflow:v3.1.0"
FAKE_DB_URI = "postgresql://mlflow:golden-db-password@postgres.example:5432/mlflow"

# case -> (notebook, DeployConfig keyword arguments)
CASES: dict[str, tuple[Path, dict[str, Any]]] = {
    "agents_loop": (ROOT / "notebooks" / "agents_loop.ipynb", {}),
    "agents_loop-registry": (ROOT / "notebooks" / "agents_loop.ipynb",
                             {"registry": "registry.example:5000", "team": "ml-ops",
                              "images": {"monitor": "registry.example:5000/scanflow/agents-loop-monitor:0123456789ab"}}),
    "services": (GOLDEN / "services.ipynb", {}),
    "services-external": (GOLDEN / "services.ipynb",
                          {"tracker_db_uri": FAKE_DB_URI, "tracker_artifacts": "s3://mlflow-artifacts/churn",
                           "s3_endpoint_url": "http://minio.example:9000",
                           "aws_access_key_id": "GOLDENKEYID", "aws_secret_access_key": "golden-secret-key"}),
    "agents_loop-postgres": (ROOT / "notebooks" / "agents_loop.ipynb", {"storage_mode": "postgres"}),
    "agents_loop-ephemeral": (ROOT / "notebooks" / "agents_loop.ipynb", {"storage_mode": "ephemeral"}),
}


def config_for(settings: dict[str, Any]) -> DeployConfig:
    config = DeployConfig(tracker_image=TRACKER_IMAGE, **settings)
    config.check()
    return config


def case_manifests(case: str) -> list[dict[str, Any]]:
    notebook, settings = CASES[case]
    return build_manifests(parse_notebook(notebook), config_for(settings))


def expected_files() -> dict[Path, str]:
    return {GOLDEN / f"{case}.yaml": to_yaml(case_manifests(case)) for case in CASES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    expected = expected_files()
    existing = set(GOLDEN.glob("*.yaml"))
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    extra = sorted(existing - set(expected))
    if args.check:
        for p in stale:
            print(f"stale or missing: {p.relative_to(ROOT)}")
        for p in extra:
            print(f"extra: {p.relative_to(ROOT)}")
        return 1 if stale or extra else 0
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for p in stale:
        p.write_text(expected[p], encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
