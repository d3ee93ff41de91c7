"""Unit tests for scanflow_jupyter.runtime.figures: naming and extraction of a step's figures."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from scanflow_jupyter.runtime.figures import INLINE_BACKEND, extract_figures


def _png(tag: bytes) -> str:
    return base64.b64encode(b"\x89PNG" + tag).decode()


def _cell(source_cell: int | None, *outputs: dict) -> dict:
    return {"cell_type": "code", "source": "", "outputs": list(outputs),
            "metadata": {"scanflow": {"role": "body", "source_cell": source_cell}}}


def _display(data: dict) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def test_images_are_named_by_1_based_cell_and_order(tmp_path: Path) -> None:
    nb = {"cells": [
        _cell(None, _display({"image/png": _png(b"gen")})),  # a generated cell: its step position
        _cell(4, _display({"text/plain": "x"}), _display({"image/png": _png(b"a")}),
              {"output_type": "execute_result", "data": {"image/png": [_png(b"b")]}, "metadata": {}}),
        _cell(6, {"output_type": "stream", "name": "stdout", "text": "no image"}),
    ]}
    out = tmp_path / "output.ipynb"
    out.write_text(json.dumps(nb), encoding="utf-8")
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "stale.png").write_bytes(b"old")  # from an earlier attempt: replaced

    paths = extract_figures(out, folder)
    assert [p.name for p in paths] == ["step1-1.png", "5-1.png", "5-2.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["5-1.png", "5-2.png", "step1-1.png"]
    assert (folder / "5-2.png").read_bytes() == b"\x89PNGb"


def test_no_images_or_no_notebook_gives_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "output.ipynb"
    out.write_text(json.dumps({"cells": [_cell(0, _display({"text/html": "<b>x</b>"}))]}), encoding="utf-8")
    folder = tmp_path / "figures"
    folder.mkdir()
    assert extract_figures(out, folder) == []
    assert not folder.exists()
    assert extract_figures(tmp_path / "missing.ipynb", folder) == []
    (tmp_path / "torn.ipynb").write_text('{"cells": [', encoding="utf-8")
    assert extract_figures(tmp_path / "torn.ipynb", folder) == []


def test_inline_backend_is_matplotlib_inline_and_the_zygote_preload_skips_matplotlib() -> None:
    assert INLINE_BACKEND == "module://matplotlib_inline.backend_inline"
    code = ("import sys\nfrom scanflow_jupyter.runtime.zygote import PRELOAD\n"
            "[__import__(n) for n in PRELOAD]\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'matplotlib_inline')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
