"""The adaptive admission policy (pure function) and the CPU sampler on real child processes."""

from __future__ import annotations

import subprocess
import sys

from scanflow_jupyter.runtime.admission import (
    CpuSampler,
    allows,
    cpu_hint,
    default_cap,
    hint_for_admission,
)


def test_up_to_the_cpu_count_always():
    assert allows(1, 2, 8, busy_cores=None, hints=0, candidate_hint=1)
    assert not allows(2, 2, 8, busy_cores=None, hints=0.5, candidate_hint=0.25)


def test_beyond_cores_only_while_the_running_steps_wait():
    assert allows(2, 2, 8, busy_cores=0.1, hints=0.5, candidate_hint=0.25)
    assert not allows(2, 2, 8, busy_cores=1.9, hints=0.5, candidate_hint=0.25)


def test_not_beyond_cores_when_the_machine_has_no_cpu_to_spare():
    """Busy steps starved by other load use little CPU, like waiting ones: the machine's idle CPU decides."""
    assert not allows(2, 2, 8, busy_cores=0.1, hints=0.5, candidate_hint=0.25, idle_cores=0.1)
    assert allows(2, 2, 8, busy_cores=0.1, hints=0.5, candidate_hint=0.25, idle_cores=1.8)


def test_sampler_measures_the_machines_idle_cpu():
    import time

    sampler = CpuSampler()
    sampler.reset()
    for _ in range(3):
        sampler.sample()
        time.sleep(0.1)
    assert sampler.idle is not None and sampler.idle >= 0.0


def test_cap_and_cpu_hints_bound_admission():
    assert not allows(8, 2, 8, busy_cores=0.0, hints=2.0, candidate_hint=0.25)
    assert not allows(2, 2, 8, busy_cores=0.0, hints=1.5, candidate_hint=1.0)  # --cpu 1 would exceed 2 cores
    assert default_cap(2) == 8


def test_hints():
    assert cpu_hint("500m") == 0.5 and cpu_hint("2") == 2.0 and cpu_hint(None) == 1.0
    assert hint_for_admission(None) == 0.25 and hint_for_admission("1") == 1.0


def test_sampler_sees_a_busy_child():
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 30\n"
                              "while time.process_time() < end: pass"])
    try:
        sampler = CpuSampler()
        sampler.reset()
        assert sampler.sample() is None  # baseline
        while sampler.sample() is None:  # the skipped window
            pass
        busy = None
        while busy is None or busy == 0:
            busy = sampler.sample()
        assert busy > 0
    finally:
        child.kill()
        child.wait()
