"""A notebook as a runnable Application: parse, validate, refuse what cannot run.

The one entry point of the notebook layer for everything that runs or exports a pipeline (the
runner, the Argo export, the server, agents): nothing here starts a kernel or touches MLflow.
"""

from __future__ import annotations

from pathlib import Path

from scanflow_jupyter.model import Application, Message


class InvalidApplication(Exception):
    """The notebook (or the run request) is invalid: nothing was executed, nothing tracked."""

    def __init__(self, messages: list[Message], app: Application | None = None) -> None:
        self.messages = messages
        self.app = app
        errors = [m for m in messages if m.severity == "error"]
        super().__init__("\n".join(str(m) for m in errors) or "invalid application")


def load_application(notebook: str | Path) -> tuple[Application, list[Message]]:
    """Parse and validate; raise InvalidApplication if the notebook cannot run."""
    from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
    from scanflow_jupyter.notebook.validate import has_errors, validate

    try:
        app = parse_notebook(notebook)
    except NotebookReadError as exc:
        raise InvalidApplication([exc.message]) from exc
    messages = validate(app)
    if has_errors(messages):
        raise InvalidApplication(messages, app)
    if not app.executors:
        raise InvalidApplication(messages + [Message(
            "error", "no-executors", "the notebook declares no %%executor cell, so there is no pipeline to run.",
            "add an %%executor cell; services and agents are started with `scanflow deploy` / `scanflow agents up`.")],
            app)
    return app, messages
