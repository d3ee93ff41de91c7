"""agents.json (the registry), peer lookup, and the status widget / table built from it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scanflow_jupyter.agents.control import AgentRow, UpResult, ls
from scanflow_jupyter.agents.registry import PeerNotFound, Registry, pid_alive
from scanflow_jupyter.agents.widget import AgentsWidget


def _entry(app, port_by_agent, state="running", pid=None):
    return {"app": app, "supervisor_pid": pid, "agents": {
        n: {"port": p, "url": f"http://127.0.0.1:{p}", "state": state} for n, p in port_by_agent.items()}}


def test_edit_is_atomic_and_readable(tmp_path):
    reg = Registry(tmp_path)
    assert reg.read() == {"version": 1, "notebooks": {}}
    with reg.edit() as data:
        data["notebooks"]["/nb.ipynb"] = _entry("a", {"m": 1})
    reg.update_agent("/nb.ipynb", "m", state="restarting")
    reg.update_agent("/other.ipynb", "m", state="x")  # unknown notebook: ignored
    assert reg.notebook("/nb.ipynb")["agents"]["m"]["state"] == "restarting"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_find_peer_prefers_this_notebook_then_this_app(tmp_path):
    reg = Registry(tmp_path)
    with reg.edit() as data:
        data["notebooks"]["/a.ipynb"] = _entry("churn", {"planner": 1001, "monitor": 1002})
        data["notebooks"]["/b.ipynb"] = _entry("fraud", {"planner": 2001, "solo": 2002})
        data["notebooks"]["/c.ipynb"] = _entry("fraud", {"gone": 3001}, state="refused")
    assert reg.find_peer("planner", app="churn", notebook="/a.ipynb")["port"] == 1001
    assert reg.find_peer("planner", app="fraud", notebook="/x.ipynb")["port"] == 2001
    assert reg.find_peer("fraud/planner", app="churn")["port"] == 2001
    assert reg.find_peer("solo", app="churn")["port"] == 2002  # unique anywhere
    with pytest.raises(PeerNotFound, match="ambiguous"):
        reg.find_peer("planner", app="other")
    with pytest.raises(PeerNotFound, match="no running agent 'gone'.*running: churn/monitor"):
        reg.find_peer("gone", app="fraud")


def test_pid_alive_checks_the_command_line_and_zombies():
    assert pid_alive(os.getpid())
    assert not pid_alive(os.getpid(), marker="certainly-not-in-my-command-line")
    assert not pid_alive(None) and not pid_alive(0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_ls_marks_agents_of_a_dead_supervisor_stopped(tmp_path):
    reg = Registry(tmp_path)
    with reg.edit() as data:
        data["notebooks"]["/a.ipynb"] = _entry("churn", {"planner": 1001}, pid=None)
        data["notebooks"]["/a.ipynb"]["agents"]["bad"] = {"state": "refused", "cell": 3,
                                                         "message": {"text": "t", "fix": "f"}}
    rows = {r.name: r for r in ls(home=tmp_path)}
    assert rows["planner"].state == "stopped" and rows["planner"].pid is None
    assert rows["bad"].state == "refused"


def test_widget_and_up_result():
    rows = [AgentRow(app="churn", name="monitor", notebook="/a.ipynb", state="running", port=4100, pid=12,
                     uptime_s=3.2, sensors=[{"name": "weak", "schedule": "on new_run"}], last_value="weak: 2",
                     last_error="weak: MLflow: down (recovered)"),
            AgentRow(app="churn", name="planner", notebook="/a.ipynb", state="failed", restarts=2,
                     message={"text": "agent 'planner' is failed", "fix": "see its log"})]
    refused = [{"agent": "typo", "cell": 5, "code": "unknown-template", "text": "unknown agent template 'planer'.",
                "fix": "did you mean --template planner?"}]
    widget = AgentsWidget(rows, title="agents of churn", refused=refused, reload=lambda: rows[:1])
    text = widget.text()
    assert "monitor  running" in text and "port 4100" in text and "sensors weak (on new_run)" in text
    assert "refused typo (cell 6): unknown agent template 'planer'. Fix: did you mean --template planner?" in text
    html = widget.html()
    assert "weak: 2" in html and "agent &#x27;planner&#x27; is failed" in html and "cell 6" in html
    widget.refresh_rows()
    assert [r.name for r in widget.rows] == ["monitor"]
    result = UpResult("/a.ipynb", "churn", 1, agents=rows, refused=refused)
    assert [r.name for r in result.failed] == ["planner"] and result.exit_code == 1
    assert UpResult("/a.ipynb", "churn", None).exit_code == 2
    assert UpResult("/a.ipynb", "churn", 1, agents=rows[:1]).exit_code == 0


def test_cli_table_renders():
    from rich.console import Console

    from scanflow_jupyter.cli.agents import agents_table

    console = Console(width=200, record=True)
    console.print(agents_table([AgentRow(app="churn", name="monitor", notebook="/a", state="running", port=1,
                                         pid=2, uptime_s=65, sensors=[{"name": "s", "schedule": "every 1s"}],
                                         last_value="s: 1")]))
    out = console.export_text()
    for word in ("agent", "port", "pid", "uptime", "sensors", "last value", "last error", "churn/monitor",
                 "1 min 05 s", "s (every 1s)"):
        assert word in out


def test_registry_is_private_and_holds_no_credentials(tmp_path):
    import stat

    reg = Registry(tmp_path)
    reg.path.write_text('{"version": 1, "notebooks": {"/old.ipynb": {"app": "a", '
                        '"tracking_uri": "https://bob:hunter2pw@mlflow.example/"}}}')  # an older version's file
    os.chmod(reg.path, 0o644)
    old = os.umask(0)
    try:
        with reg.edit() as data:
            data["notebooks"]["/nb.ipynb"] = {"app": "b", "tracking_uri": "http://u:s3cr3tpw@127.0.0.1:5000"}
    finally:
        os.umask(old)
    assert stat.S_IMODE(reg.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(reg.lock_path.stat().st_mode) == 0o600
    text = reg.path.read_text()
    assert "hunter2pw" not in text and "s3cr3tpw" not in text
    assert reg.notebook("/nb.ipynb")["tracking_uri"] == "http://***@127.0.0.1:5000"
