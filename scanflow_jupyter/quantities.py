"""Kubernetes resource quantities: one grammar for validation, manifests and the docker backend.

The grammar is Kubernetes' own (`k8s.io/apimachinery/pkg/api/resource`): an optional sign, a
decimal number, then a binary suffix (Ki..Ei), a decimal suffix (n u m k M G T P E) or a decimal
exponent (`1e3`). Values are exact (`Fraction`); conversions round up, as Kubernetes does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|n|u|m|k|M|G|T|P|E)?$"
)
BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1, "k": 10**3,
           "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_BYTES_HINT = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE])(i?)B$", re.I)


def is_quantity(text: object) -> bool:
    """True if `text` is a string in the Kubernetes quantity grammar."""
    return isinstance(text, str) and QUANTITY.match(text) is not None


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity ("500m" -> 1/2, "1Ki" -> 1024); ValueError if not a quantity."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Fraction(text)
    match = QUANTITY.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi, 1e3).")
    value = Fraction(match["number"])
    suffix = match["suffix"] or ""
    if suffix in BINARY:
        value *= BINARY[suffix]
    elif suffix in DECIMAL:
        value *= DECIMAL[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if match["sign"] == "-" else value


def cpu_problem(text: str) -> str | None:
    """Why `text` cannot be a step's CPU limit (None if it can): a positive number of whole millicores."""
    try:
        value = parse_quantity(text)
    except ValueError:
        return "not a quantity"
    if value <= 0:
        return "not positive"
    if (value * 1000).denominator != 1:
        return "finer than a millicore"
    return None


def memory_problem(text: str) -> str | None:
    """Why `text` cannot be a step's memory limit (None if it can): a whole, non-negative number of bytes."""
    try:
        value = parse_quantity(text)
    except ValueError:
        return "not a quantity"
    if value < 0:
        return "negative"
    if value.denominator != 1:
        return "not a whole number of bytes"
    return None


def memory_hint(text: str) -> str:
    """How to write `text` (e.g. "2GB") as a memory quantity."""
    m = _BYTES_HINT.match(text)
    if m:
        n, unit = m.group(1), m.group(2).upper()
        decimal = "k" if unit == "K" else unit
        return f"write --memory {n}{unit}i (binary units) or --memory {n}{decimal} (decimal units)."
    return "use Kubernetes units, e.g. --memory 512Mi or --memory 2Gi."


def memory_bytes(quantity: str | int | float) -> int:
    """A memory quantity ("512Mi", "2Gi", "1G", "1Pi") in bytes, rounded up."""
    try:
        return math.ceil(parse_quantity(quantity))
    except ValueError:
        raise ValueError(f"not a memory quantity: {quantity!r}") from None


def nano_cpus(quantity: str | int | float) -> int:
    """A CPU quantity ("1", "0.5", "500m") in Docker nano-CPUs, rounded up."""
    try:
        return math.ceil(parse_quantity(quantity) * 10**9)
    except ValueError:
        raise ValueError(f"not a CPU quantity: {quantity!r}") from None
