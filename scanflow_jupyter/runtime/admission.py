"""Adaptive admission: how many steps may run at once when `--max-parallel` was not given.

Up to the CPU count always; beyond it (up to `cap`) only while the running steps mostly wait
(their kernels used < `idle_share` of a core each on average over the last sample window)
and the `--cpu` hints of the running steps (plus the candidate's) stay within the CPU count.
`allows()` is a pure function; `CpuSampler` measures the runner's child processes with psutil.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from scanflow_jupyter.quantities import parse_quantity

IDLE_SHARE = 0.25  # of one core per running step, on average
MIN_IDLE_CORES = 0.5  # the machine must have had this much CPU unused over the window
CAP_FACTOR = 4  # at most this many steps per core


def cpu_hint(quantity: str | None) -> float:
    """A step's `--cpu` hint in cores (1 when it gave none)."""
    if not quantity:
        return 1.0
    try:
        return float(parse_quantity(quantity))
    except ValueError:
        return 1.0


def allows(running: int, cores: int, cap: int, busy_cores: float | None, hints: float, candidate_hint: float,
           idle_cores: float | None = None) -> bool:
    """Whether one more step may start beside `running` ones.

    `busy_cores`: CPU the running steps used over the last window, in cores (None: not sampled yet);
    `hints`: the running steps' `--cpu` hints summed (see `hint_for_admission`); `idle_cores`: CPU
    the whole machine left unused over that window — a busy step starved by other load uses little
    CPU too, so steps are added beyond the cores only while the machine has CPU to spare.
    """
    if running < cores:
        return True
    if running >= cap or busy_cores is None:
        return False
    if hints + candidate_hint > cores:
        return False
    if idle_cores is not None and idle_cores < MIN_IDLE_CORES:
        return False
    return busy_cores < IDLE_SHARE * running


def hint_for_admission(quantity: str | None) -> float:
    """The share a step claims in the hint sum: its `--cpu` value, or `IDLE_SHARE` if it gave none."""
    return cpu_hint(quantity) if quantity else IDLE_SHARE


@dataclass
class CpuSampler:
    """CPU time of this process's descendants (the step kernels), as cores used between samples."""

    last: tuple[float, dict[int, float]] | None = None
    busy: float | None = field(default=None)
    idle: float | None = field(default=None)  # cores the whole machine left unused over the window
    skip: int = 1
    _machine_idle: float | None = None

    def reset(self) -> None:
        """A step was admitted: forget the samples and skip the next window (its kernel settles)."""
        self.last, self.busy, self.idle, self.skip, self._machine_idle = None, None, None, 1, None

    def sample(self) -> float | None:
        """Take a sample; returns cores used since the previous one (None on the first and skipped ones)."""
        import psutil

        now = time.monotonic()
        times: dict[int, float] = {}
        for child in psutil.Process(os.getpid()).children(recursive=True):
            try:
                t = child.cpu_times()
                times[child.pid] = t.user + t.system
            except psutil.Error:
                continue
        machine = psutil.cpu_times()
        machine_idle = machine.idle + getattr(machine, "iowait", 0.0)
        if self.last is not None and now > self.last[0]:
            before_t, before = self.last
            used = sum(max(0.0, cpu - before.get(pid, cpu)) for pid, cpu in times.items())
            self.busy = used / (now - before_t)
            if self._machine_idle is not None:
                self.idle = max(0.0, machine_idle - self._machine_idle) / (now - before_t)
            if self.skip:
                self.skip, self.busy, self.idle = self.skip - 1, None, None
        self.last, self._machine_idle = (now, times), machine_idle
        return self.busy


def default_cap(cores: int) -> int:
    return max(1, cores) * CAP_FACTOR
