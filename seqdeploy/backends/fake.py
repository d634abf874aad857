"""A runner driven by a Python function: hermetic tests of the comparator, reports and CLI plumbing."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from seqdeploy.backends.base import BaseRunner
from seqdeploy.spec import IOSpec

__all__ = ["FakeRunner"]

Handler = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class FakeRunner(BaseRunner):
    """Runs ``handler(feeds) -> outputs``; counts loads and calls so tests can assert on them."""

    def __init__(self, spec: IOSpec, handler: Handler, name: str = "fake") -> None:
        super().__init__(name, spec)
        self.handler = handler
        self.loads = 0
        self.calls = 0

    def _load(self) -> None:
        self.loads += 1

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        return self.handler(feeds)
