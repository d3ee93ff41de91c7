"""One Kubernetes quantity grammar: the table, the conversions, and that every caller uses it."""

from __future__ import annotations

from fractions import Fraction

import pytest

from scanflow_jupyter import quantities
from scanflow_jupyter.kubernetes import validation as k8s_validation
from scanflow_jupyter.model import Application, Executor, Resources
from scanflow_jupyter.notebook.validate import has_errors, validate
from scanflow_jupyter.quantities import (
    cpu_problem,
    is_quantity,
    memory_bytes,
    memory_problem,
    nano_cpus,
    parse_quantity,
)
from scanflow_jupyter.runtime import docker_backend

ACCEPTED = [
    ("0", 0), ("1", 1), ("0.5", Fraction(1, 2)), (".5", Fraction(1, 2)), ("1.", 1), ("+2", 2), ("-1", -1),
    ("100m", Fraction(1, 10)), ("5u", Fraction(5, 10**6)), ("7n", Fraction(7, 10**9)), ("1k", 1000),
    ("1M", 10**6), ("1G", 10**9), ("1T", 10**12), ("1P", 10**15), ("1E", 10**18),
    ("1Ki", 2**10), ("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1.5Gi", 3 * 2**29), ("1Ti", 2**40), ("1Pi", 2**50),
    ("1Ei", 2**60), ("1e3", 1000), ("1E3", 1000), ("2e-3", Fraction(2, 1000)), ("1e+2", 100),
]


def with_executor(**kwargs: object) -> Application:
    return Application(name="demo", notebook="demo.ipynb", executors=[Executor("a", 3, "x = 1", **kwargs)])


REFUSED = ["", "lots", "Gi", "2 Gi", " 1", "1 ", "2GB", "512mb", "1KB", "1K", "1mi", "1e", "1.2.3", "--1", "1Gi1", "0x10"]


@pytest.mark.parametrize(("text", "value"), ACCEPTED)
def test_accepted_quantities_and_their_values(text: str, value: Fraction) -> None:
    assert is_quantity(text)
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", REFUSED)
def test_refused_quantities(text: str) -> None:
    assert not is_quantity(text)
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_numbers_are_quantities_and_bools_are_not() -> None:
    assert parse_quantity(2) == 2 and parse_quantity(0.5) == Fraction(1, 2)
    assert not is_quantity(2) and not is_quantity(None)
    with pytest.raises(ValueError):
        parse_quantity(True)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "problem"), [
    ("2", None), ("0.5", None), ("250m", None), ("1e3", None), ("1k", None),
    ("0", "not positive"), ("0m", "not positive"), ("-1", "not positive"),
    ("1.5m", "finer than a millicore"), ("100u", "finer than a millicore"), ("two", "not a quantity"),
])
def test_cpu_rule(text: str, problem: str | None) -> None:
    assert cpu_problem(text) == problem


@pytest.mark.parametrize(("text", "problem"), [
    ("0", None), ("512Mi", None), ("1Pi", None), ("1e9", None), ("0.5k", None), ("1.5Gi", None),
    ("512m", "not a whole number of bytes"), ("1.5", "not a whole number of bytes"), ("-1Gi", "negative"),
    ("2GB", "not a quantity"),
])
def test_memory_rule(text: str, problem: str | None) -> None:
    assert memory_problem(text) == problem


def test_docker_conversions_round_up() -> None:
    assert memory_bytes("512Mi") == 512 * 2**20 and memory_bytes("1G") == 10**9 and memory_bytes("1Pi") == 2**50
    assert memory_bytes("1e3") == 1000 and memory_bytes("1.5") == 2
    assert nano_cpus("1") == 10**9 and nano_cpus("500m") == 5 * 10**8 and nano_cpus("0.25") == 25 * 10**7
    assert nano_cpus("1n") == 1 and nano_cpus("1e-10") == 1
    with pytest.raises(ValueError, match="not a memory quantity: 'lots'"):
        memory_bytes("lots")
    with pytest.raises(ValueError, match="not a CPU quantity: 'two'"):
        nano_cpus("two")


@pytest.mark.parametrize(("cpu", "memory"), [("1e3", "1Pi"), ("500m", "1e9"), ("2", "512Mi"), ("0.5", "1.5Gi")])
def test_a_step_that_validates_gets_docker_limits_and_a_valid_manifest(cpu: str, memory: str) -> None:
    """The old bug: `--memory 1Pi` passed validation, then the docker backend's own parser raised."""
    assert not has_errors(validate(with_executor(resources=Resources(cpu=cpu, memory=memory))))
    limits = docker_backend.container_limits(cpu, memory)
    assert limits == {"nano_cpus": nano_cpus(cpu), "mem_limit": memory_bytes(memory)}
    resources = {"limits": {"cpu": cpu, "memory": memory}}
    assert k8s_validation._quantity_problems({"kind": "Pod", "metadata": {"name": "p"}}, ["r"], resources) == []


@pytest.mark.parametrize(("cpu", "memory"), [("0", None), ("1.5m", None), (None, "512m"), (None, "2GB"), (None, "-1")])
def test_what_validation_refuses_is_refused_with_the_cell(cpu: str | None, memory: str | None) -> None:
    msgs = validate(with_executor(resources=Resources(cpu=cpu, memory=memory)))
    assert [m.code for m in msgs] == ["bad-quantity"]
    assert msgs[0].cell == 3


def test_every_caller_uses_the_one_module() -> None:
    assert docker_backend.memory_bytes is quantities.memory_bytes and docker_backend.nano_cpus is quantities.nano_cpus
    assert k8s_validation.is_quantity is quantities.is_quantity
    for module in (docker_backend, k8s_validation):
        assert not hasattr(module, "QUANTITY") and not hasattr(module, "_QUANTITY")
