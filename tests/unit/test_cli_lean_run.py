"""Importing the package defers jsonschema's RFC 3987 grammar (≈0.9 s of import CPU) until it is used.

`scanflow run`, `run_notebook` and everything else that imports nbformat would otherwise build
the grammar on the first step's path; the deferral must not change any `iri` check.
"""

from __future__ import annotations

import json
import subprocess
import sys

_RUN_PROBE = """
import json, sys
from click.testing import CliRunner
from scanflow_jupyter.cli import main
result = CliRunner().invoke(main, ["run", "no-such-notebook.ipynb", "--json"])
import nbclient, nbformat.v4  # what the local backend imports for the first step
nbformat.v4.new_output("stream", name="stdout", text="")  # builds nbformat's validator
print(json.dumps({"exit": result.exit_code, "grammar_loaded": "rfc3987_syntax.syntax_helpers" in sys.modules,
                  "jsonschema": "jsonschema" in sys.modules}))
"""

_IRI_PROBE = """
import json, sys
if sys.argv[1] == "deferred":
    import scanflow_jupyter  # noqa: F401
import jsonschema
before = "rfc3987_syntax.syntax_helpers" in sys.modules
checker = jsonschema.FormatChecker()
values = ["http://example.com/ä", "not an iri ::", "a b", "urn:isbn:0451450523", "//host/path?q#f", ""]
answers = [[checker.conforms(v, "iri"), checker.conforms(v, "iri-reference")] for v in values]
import rfc3987_syntax.syntax_helpers  # noqa: F401 - a submodule stays importable
print(json.dumps({"before": before, "answers": answers,
                  "real": hasattr(sys.modules["rfc3987_syntax"], "syntax_helpers")}))
"""


def _probe(code: str, *args: str, cwd: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_run_does_not_build_the_rfc3987_grammar(tmp_path) -> None:
    doc = _probe(_RUN_PROBE, cwd=str(tmp_path))
    assert doc["exit"] == 2  # the missing notebook: nothing ran
    assert doc["jsonschema"], "nbclient no longer imports jsonschema: this test no longer guards anything"
    assert not doc["grammar_loaded"]


def test_iri_checks_are_unchanged_by_the_deferral(tmp_path) -> None:
    plain = _probe(_IRI_PROBE, "plain", cwd=str(tmp_path))
    deferred = _probe(_IRI_PROBE, "deferred", cwd=str(tmp_path))
    assert plain["before"], "jsonschema no longer imports rfc3987_syntax: the deferral guards nothing"
    assert not deferred["before"]
    assert deferred["answers"] == plain["answers"]
    assert [False, False] in plain["answers"] and [True, True] in plain["answers"]  # the checks do decide
    assert deferred["real"]
