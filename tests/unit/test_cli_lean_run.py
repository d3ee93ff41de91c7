"""`scanflow run` keeps jsonschema's RFC 3987 grammar (1-3 s of import CPU) off the first step's path."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
from click.testing import CliRunner
from scanflow_jupyter.cli import main
result = CliRunner().invoke(main, ["run", "no-such-notebook.ipynb", "--json"])
import nbclient  # what the local backend imports for the first step
print(json.dumps({"exit": result.exit_code, "grammar_loaded": sys.modules.get("rfc3987_syntax") is not None,
                  "jsonschema": "jsonschema" in sys.modules}))
"""


def test_run_does_not_build_the_rfc3987_grammar(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["exit"] == 2  # the missing notebook: nothing ran
    assert doc["jsonschema"], "nbclient no longer imports jsonschema: this test no longer guards anything"
    assert not doc["grammar_loaded"]
