"""Targets for the benchmarks: each figure is said to be met or MISSED, in plain words.

A benchmark calls :meth:`Targets.check` for each figure with a target, and
exits with :meth:`Targets.verdict`: 0 when every target was met, 1 when one
was missed (the last line names them), so a script or CI sees a miss too.
"""

from __future__ import annotations


class Targets:
    """The targets checked in one run of a benchmark, and which were missed."""

    def __init__(self) -> None:
        self.checked = 0
        self.missed: list[str] = []

    def check(
        self,
        what: str,
        value: float,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        unit: str = "",
    ) -> bool:
        """Print whether ``value`` meets its bound (one of ``at_least``/``at_most``)."""
        if (at_least is None) == (at_most is None):
            raise ValueError("give one of at_least or at_most")
        if at_least is not None:
            met, bound = value >= at_least, f">= {at_least:g}{unit}"
        else:
            assert at_most is not None
            met, bound = value <= at_most, f"<= {at_most:g}{unit}"
        self.checked += 1
        shown = f"{what}: {value:.3g}{unit}, target {bound}"
        if met:
            print(f"  target met: {shown}")
        else:
            print(f"  TARGET MISSED: {shown}")
            self.missed.append(shown)
        return met

    def verdict(self) -> int:
        """Print the run's verdict; the exit status (1 if any target was missed)."""
        if self.missed:
            print(f"{len(self.missed)} of {self.checked} targets MISSED: " + "; ".join(self.missed))
            return 1
        if not self.checked:
            print("no target was checked in this run")
        else:
            print(f"all {self.checked} targets met")
        return 0
