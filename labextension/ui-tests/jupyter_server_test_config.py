"""Jupyter server for the Galata tests of the Scanflow extension.

Root: `ui-tests/.galata-root/root` (wiped at every start), holding a copy of the repository's
example notebooks (`notebooks/`), so runs, the MLflow store (`<root>/.scanflow/`) and agents never
touch the checkout. The Scanflow server extension is enabled here and the lab extension is loaded
from its build output (`scanflow_jupyter/labextension`, built by `jlpm build` in labextension/),
so no install step is needed. Port: $SCANFLOW_GALATA_PORT (default 8897).
"""

import contextlib
import os
import shutil
from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD = REPO / "scanflow_jupyter" / "labextension"
BASE = HERE / ".galata-root"

if not (BUILD / "package.json").exists():
    raise SystemExit(f"no built lab extension in {BUILD}: run `jlpm build` in {HERE.parent} first")

configure_jupyter_server(c)  # noqa: F821 - `c` is the config object jupyter passes in
# Galata just made an empty root and workspaces folder in the temp dir; ours replace them.
for made in (c.ServerApp.root_dir, c.LabApp.workspaces_dir):  # noqa: F821
    if Path(made).name.startswith(("galata-test-", "galata-workspaces-")):
        with contextlib.suppress(OSError):
            os.rmdir(made)

shutil.rmtree(BASE, ignore_errors=True)
root = BASE / "root"
shutil.copytree(REPO / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
(BASE / "workspaces").mkdir()
# The lab extension from the build output: a folder that holds `scanflow-jupyter -> BUILD`.
ext_dir = BASE / "labextensions"
ext_dir.mkdir()
(ext_dir / "scanflow-jupyter").symlink_to(BUILD, target_is_directory=True)

c.ServerApp.root_dir = str(root)  # noqa: F821
c.LabApp.workspaces_dir = str(BASE / "workspaces")  # noqa: F821
c.ServerApp.ip = "127.0.0.1"  # noqa: F821
c.ServerApp.port = int(os.environ.get("SCANFLOW_GALATA_PORT", "8897"))  # noqa: F821
c.ServerApp.allow_root = True  # noqa: F821
c.ServerApp.jpserver_extensions = {"scanflow_jupyter.server": True}  # noqa: F821
# the benchmark compares runs with and without the warm worker (#14): SCANFLOW_WARM_WORKER=0 turns it off
c.Scanflow.warm_worker = os.environ.get("SCANFLOW_WARM_WORKER", "1") != "0"  # noqa: F821
c.LabServerApp.extra_labextensions_path = [  # noqa: F821
    c.LabServerApp.extra_labextensions_path,  # noqa: F821 - Galata's helper extension
    str(ext_dir),
]
c.LabApp.news_url = None  # noqa: F821
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"  # noqa: F821
