"""One grammar: `scanflow CMD` and `%scanflow CMD` accept and refuse the same argument vectors (real CLI
subprocess, real IPython shell, real runs), and `%scanflow build|deploy|status` run the CLI for the notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from scanflow_jupyter.cli import grammar
from scanflow_jupyter.magics import register
from tests.conftest import notebook_dict

CELLS = [
    "%scanflow_app grammar",
    "%%params\nn = 3",
    "%%executor a --outputs data\ndata = list(range(n))",
    "%%executor b --inputs data --outputs s\ns = sum(data)",
]

# (argv after `run NOTEBOOK`, refusal text or None when accepted)
RUN_CASES = [
    (["--only", "a", "--only", "b"], None),
    (["-p", "n=4", "--max-parallel", "1", "--no-cache"], None),
    (["--only", "a", "b"], "Got unexpected extra argument (b)"),
    (["--bogus"], "No such option --bogus"),
    (["--max-parallel", "0"], "Invalid value for '--max-parallel'"),
    (["-p"], "Option '-p' requires an argument."),
]


@pytest.fixture(scope="module")
def _shell(tmp_path_factory):
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell.instance(config=config, ipython_dir=str(tmp_path_factory.mktemp("ipython")))


@pytest.fixture
def ip(_shell, project):
    _shell.reset(new_session=False)
    register(_shell)
    return _shell


def _notebook(folder: Path) -> Path:
    path = folder / "grammar.ipynb"
    path.write_text(json.dumps(notebook_dict(CELLS)), encoding="utf-8")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanflow_jupyter.cli", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def _magic(ip, line: str, capsys) -> tuple[bool, str]:
    capsys.readouterr()
    result = ip.run_cell(line)
    captured = capsys.readouterr()
    return result.success, captured.out + captured.err


def _norm(text: str) -> str:
    return text.replace("'", "").replace('"', "")  # click quotes differ between versions of the same message


@pytest.mark.parametrize(("argv", "refusal"), RUN_CASES, ids=[" ".join(c[0]) for c in RUN_CASES])
def test_run_argv_accepted_or_refused_alike(ip, project, capsys, argv, refusal):
    nb = _notebook(project.root)
    cli = _cli("run", str(nb), "--json", *argv)
    ok, text = _magic(ip, f"%scanflow run --notebook {nb} " + " ".join(argv), capsys)
    if refusal is None:
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["status"] == "succeeded"
        assert ok, text
    else:
        assert cli.returncode == 2
        assert _norm(refusal) in _norm(cli.stderr)
        assert not ok
        assert _norm(refusal) in _norm(text)
        assert f"%scanflow run: {cli.stderr.split('Error: ', 1)[1].strip()}" in text  # the same words


def test_grammar_parse_matches_the_cli_options():
    parsed = grammar.parse("run", ["nb.ipynb", "--only", "a", "--only", "b", "-p", "x=1"])
    assert parsed.params["only"] == ("a", "b")
    assert parsed.params["params"] == ("x=1",)
    with pytest.raises(grammar.GrammarError, match="unexpected extra argument"):
        grammar.parse("run", ["nb.ipynb", "--only", "a", "b"])
    assert grammar.accepts_option("run", "--backend")
    assert not grammar.accepts_option("build", "--backend")
    assert not grammar.accepts_option("no-such-command", "--json")


@pytest.mark.parametrize("action", ["build", "deploy", "status"])
def test_shared_subcommand_help_is_the_clis(ip, project, capsys, action):
    nb = _notebook(Path.cwd())
    ok, text = _magic(ip, f"%scanflow {action} --notebook {nb} --help", capsys)
    assert ok, text
    assert f"Usage: scanflow {action} [OPTIONS] NOTEBOOK" in text
    assert _cli(action, "--help").stdout.split("\n", 2)[2] in text  # same options and help text


@pytest.mark.parametrize("action", ["build", "deploy", "status"])
def test_shared_subcommand_refuses_like_the_cli(ip, project, capsys, action):
    nb = _notebook(Path.cwd())
    cli = _cli(action, str(nb), "--no-such-flag")
    ok, text = _magic(ip, f"%scanflow {action} --notebook {nb} --no-such-flag", capsys)
    assert cli.returncode == 2 and not ok
    assert "No such option --no-such-flag" in _norm(cli.stderr)
    assert "No such option --no-such-flag" in _norm(text)


def test_status_shows_the_clis_real_state(ip, project, capsys):
    """`%scanflow status` runs `scanflow status NOTEBOOK` for real: same output and exit as the CLI (here an
    unreachable cluster: a kubeconfig that does not exist)."""
    nb = _notebook(Path.cwd())
    missing = Path.cwd() / "no-such-kubeconfig"
    cli = _cli("status", str(nb), "--kubeconfig", str(missing))
    ok, text = _magic(ip, f"%scanflow status --notebook {nb} --kubeconfig {missing}", capsys)
    assert cli.returncode != 0
    assert not ok
    assert f"exited with code {cli.returncode}" in text
    first_error = (cli.stderr.strip() or cli.stdout.strip()).splitlines()[0]
    assert first_error in text


def test_build_of_an_invalid_notebook_is_refused_as_by_the_cli(ip, project, capsys):
    bad = Path.cwd() / "bad.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    cli = _cli("build", str(bad))
    ok, text = _magic(ip, f"%scanflow build --notebook {bad}", capsys)
    assert cli.returncode == 2 and not ok
    assert "exited with code 2" in text
    assert cli.stderr.strip().splitlines()[0] in text


def test_kernel_only_debug_is_not_parsed_as_a_cli_command(ip, project, capsys):
    ok, text = _magic(ip, "%scanflow debug", capsys)
    assert not ok
    assert "%scanflow debug: expected a step name" in text


def test_server_jobs_pass_only_the_flags_the_command_has(tmp_path):
    """server/jobs.py asks the grammar which flags `scanflow NAME` has (build: --push, not --backend)."""
    from scanflow_jupyter.server.jobs import JobManager

    jobs = JobManager(tmp_path, tmp_path / ".scanflow")
    options = {"--push": "registry:5000", "--backend": "local", "--wait": None}
    assert jobs.base_command("build", Path("nb.ipynb"), options)[3:] == ["build", "nb.ipynb", "--json",
                                                                         "--push=registry:5000"]
    assert jobs.base_command("run", Path("nb.ipynb"), options)[3:] == ["run", "nb.ipynb", "--json", "--backend=local"]
