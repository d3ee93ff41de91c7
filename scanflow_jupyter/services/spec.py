"""What one `%%service` cell serves: custom `predict` code (with the notebook's setup) or a model URI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import shown

__all__ = ["ServiceSpec", "ServiceSpecError", "service_specs"]


class ServiceSpecError(ValueError):
    """The notebook has no such service (or none at all); the message lists what it has."""


@dataclass
class ServiceSpec:
    """One service as the service process needs it (JSON round-trip for `services up`)."""

    name: str
    app: str
    notebook: str
    cell: int  # 0-based notebook cell
    source: str  # setup cells + the service cell body (custom services)
    model: str | None = None  # models:/NAME@ALIAS or models:/NAME/VERSION

    @property
    def kind(self) -> str:
        return "mlflow" if self.model else "custom"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceSpec:
        return cls(**{k: data[k] for k in ("name", "app", "notebook", "cell", "source", "model") if k in data})


def service_specs(notebook: str | Path, names: list[str] | None = None) -> list[ServiceSpec]:
    """The services of `notebook` (only `names` if given, in that order). Raises NotebookReadError
    for an unreadable notebook, ServiceSpecError for a notebook without (these) services."""
    from scanflow_jupyter.notebook.parser import parse_notebook

    path = Path(notebook).expanduser().resolve()
    app = parse_notebook(path)
    setup = "\n\n".join(block.source for block in app.setup)
    specs = {s.name: ServiceSpec(name=s.name, app=app.name, notebook=str(path), cell=s.cell,
                                 source=(setup + "\n\n" + s.source) if setup and not s.model else s.source,
                                 model=s.model)
             for s in app.services}
    if not specs:
        raise ServiceSpecError(f"{path.name} declares no %%service cell. Add a cell starting "
                               "`%%service NAME` (with a predict(inputs) function, or `--model models:/MODEL@ALIAS`).")
    missing = [n for n in names or [] if n not in specs]
    if missing:
        known = ", ".join(f"{s.name} (cell {shown(s.cell)})" for s in specs.values())
        raise ServiceSpecError(f"{path.name} has no service {', '.join(repr(n) for n in missing)}; its services: {known}.")
    return [specs[n] for n in names] if names else list(specs.values())
