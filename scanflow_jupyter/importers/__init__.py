"""Import pipelines from the tools users leave (Kale, Elyra, Ploomber) as Scanflow notebooks.

Each importer returns an `ImportResult`: the new notebook (nbformat 4 JSON) and, by source cell
or node, what could not be carried over. `common.finish` writes it and runs Scanflow's validation.
"""

from __future__ import annotations

IMPORTERS = ("kale", "elyra", "ploomber")
