"""``Budget``: a pruning target that states its unit - ``20%`` (of the unpruned model's cost),
``5.2`` or ``5.2GFLOPs`` (absolute), ``8ms`` (a latency, for a cost model that measures one).

The cost model passed to planning decides what can be met: ``CostModel`` counts GFLOPs, so a
percentage or GFLOPs budget resolves against it and a latency budget asks for a cost model whose
``unit`` is ``ms``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PlanError

UNITS = ("%", "GFLOPs", "ms")
_SPELLING = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%|gflops|ms)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    value: float                  # in ``unit``
    unit: str = "GFLOPs"          # one of UNITS

    @classmethod
    def parse(cls, spec: str | float) -> "Budget":
        """``20%`` | ``5.2`` | ``5.2GFLOPs`` | ``8ms`` (a bare number is GFLOPs)."""
        match = _SPELLING.match(str(spec))
        if not match:
            raise PlanError(f"budget {spec!r}: expected a percentage (20%), GFLOPs (5.2) or a latency (8ms)")
        unit = {u.lower(): u for u in UNITS}[(match.group(2) or "GFLOPs").lower()]
        value = float(match.group(1))
        if value <= 0:
            raise PlanError(f"budget must be positive, got {spec!r}")
        return cls(value, unit)

    def of(self, full: float, unit: str = "GFLOPs") -> float:
        """The budget in ``unit``, given the unpruned model's cost ``full`` in that unit: a
        percentage of ``full``, or the value itself when the units agree."""
        if self.unit == "%":
            return self.value / 100 * full
        if self.unit != unit:
            raise PlanError(f"a budget in {self.unit} needs a cost model that measures {self.unit}; "
                            f"this one measures {unit}")
        return self.value

    def resolve(self, cost) -> float:
        """The budget in ``cost.unit`` (``cost``: a ``CostModel`` or anything with ``measure()`` and ``unit``)."""
        return self.of(cost.measure(), cost.unit)

    def __str__(self) -> str:
        return f"{self.value:g}{'' if self.unit == 'GFLOPs' else self.unit}"
