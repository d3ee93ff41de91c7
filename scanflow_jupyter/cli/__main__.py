"""`python -m scanflow_jupyter.cli ...` (used by the server's jobs and runs)."""

from scanflow_jupyter.cli import main

main()
