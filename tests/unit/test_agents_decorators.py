"""`@sensor`, `@rule`, `@actuator` and the MLflow event specs: what they accept and refuse."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scanflow_jupyter.agents import (
    AgentDefinitionError,
    actuator,
    metric_crosses,
    new_model_version,
    new_run,
    rule,
    sensor,
)
from scanflow_jupyter.agents.decorators import (
    SPEC_ATTRIBUTE,
    ActuatorSpec,
    RuleSpec,
    SensorSpec,
    collecting,
    parse_duration,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("0.5s", 0.5), ("250ms", 0.25), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0),
    ("2 min", 120.0), (10, 10.0), (0.1, 0.1), (" 3S ", 3.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "fast", "-1s", "0s", 0, "1w", True, None, float("inf"), "10ms"])
def test_parse_duration_refuses_with_a_fix(bad):
    with pytest.raises(AgentDefinitionError) as err:
        parse_duration(bad)
    assert err.value.code == "bad-interval"
    assert "30s" in err.value.fix


def test_sensor_tags_the_function_and_returns_it_unchanged():
    @sensor(every="30s")
    def check(ctx):
        return 42

    spec = getattr(check, SPEC_ATTRIBUTE)
    assert isinstance(spec, SensorSpec)
    assert (spec.name, spec.trigger.kind, spec.trigger.every_s) == ("check", "every", 30.0)
    assert spec.trigger.describe() == "every 30s"
    assert check(None) == 42


def test_sensor_triggers_describe_themselves():
    @sensor(cron="0 * * * *", name="hourly")
    def a(ctx): ...

    @sensor(on=new_run("churn", where="metrics.accuracy > 0.9", poll="1s"))
    def b(ctx, runs): ...

    @sensor
    def c(ctx): ...

    sa, sb, sc = (getattr(f, SPEC_ATTRIBUTE) for f in (a, b, c))
    assert sa.name == "hourly" and sa.trigger.describe() == "cron 0 * * * *"
    assert sb.trigger.describe() == "on new finished run in churn where metrics.accuracy > 0.9"
    assert sb.trigger.short() == "on new_run"
    assert sb.trigger.event.poll_s == 1.0
    assert sc.trigger.kind == "manual"
    json.dumps([s.trigger.to_dict() for s in (sa, sb, sc)])  # JSON-able for /status


def test_sensor_with_two_triggers_is_refused_with_the_fix():
    with pytest.raises(AgentDefinitionError) as err:
        @sensor(every="1s", cron="* * * * *")
        def both(ctx): ...
    assert err.value.code == "sensor-two-triggers"
    assert "'both' has 2 triggers (every=, cron=)" in err.value.text
    assert "def both_cron(ctx)" in err.value.fix


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"cron": "every hour"}, "bad-cron"),
    ({"every": "soon"}, "bad-interval"),
    ({"on": "new_run:churn"}, "bad-event"),
    ({"name": "has space"}, "bad-name"),
])
def test_bad_sensor_options(kwargs, code):
    with pytest.raises(AgentDefinitionError) as err:
        @sensor(**kwargs)
        def s(ctx): ...
    assert err.value.code == code


def test_positional_option_is_explained():
    with pytest.raises(AgentDefinitionError, match="pass options by keyword"):
        sensor("30s")


def test_actuator_and_rule():
    @actuator
    def go(ctx, payload):
        return payload

    @actuator(name="go-fast")
    def go2(ctx, payload): ...

    @rule
    def is_bad(run):
        return run < 0

    @rule(after="check")
    def decide(ctx, value): ...

    assert isinstance(getattr(go, SPEC_ATTRIBUTE), ActuatorSpec)
    assert getattr(go2, SPEC_ATTRIBUTE).name == "go-fast"
    assert is_bad(-1) is True and getattr(is_bad, SPEC_ATTRIBUTE).after is None
    assert isinstance(getattr(decide, SPEC_ATTRIBUTE), RuleSpec)
    assert getattr(decide, SPEC_ATTRIBUTE).after == "check"


def test_collecting_gathers_specs_in_order():
    with collecting() as specs:
        @sensor(every=1)
        def a(ctx): ...

        @actuator
        def b(ctx, payload): ...

    @sensor(every=1)
    def outside(ctx): ...

    assert [s.name for s in specs] == ["a", "b"]


def test_event_specs():
    assert new_run(["a", "b"]).experiments == ("a", "b")
    crossing = metric_crosses("churn", "accuracy", below=0.8, poll="5s")
    assert crossing.describe() == "accuracy crossing below 0.8 in churn"
    assert crossing.side(0.7) == "beyond" and crossing.side(0.9) == "inside"
    assert new_model_version("m").describe() == "new version of model m"
    assert new_model_version().describe() == "new model version (any model)"


@pytest.mark.parametrize(("make", "match"), [
    (lambda: metric_crosses("e", "m"), "exactly one of above= or below="),
    (lambda: metric_crosses("e", "m", above=1, below=0), "exactly one"),
    (lambda: metric_crosses("e", "m", above="high"), "not a number"),
    (lambda: new_run(""), "not an experiment name"),
    (lambda: new_run("e", where="metrics.a > 1 or metrics.b > 2"), "no OR"),
    (lambda: new_run("e", poll="never"), "not an interval"),
])
def test_bad_events(make, match):
    with pytest.raises(AgentDefinitionError, match=match):
        make()


def test_importing_the_agent_helpers_is_cheap():
    """What %%agent cells import must not pull in FastAPI, uvicorn, httpx, MLflow or scipy."""
    code = ("import sys; from scanflow_jupyter.agents import sensor, rule, actuator, new_run; "
            "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    heavy = {"fastapi", "uvicorn", "httpx", "mlflow", "scipy", "numpy", "starlette", "pydantic", "croniter"}
    assert not loaded & heavy, loaded & heavy
