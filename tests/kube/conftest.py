"""Fixtures for the Kubernetes tests: an emulated API server on loopback.

`kube` is a running `KubeEmulator` with default settings; `kube_emulator` makes
more, with options (``kube_emulator(rollout_delay=1.0, history_size=5)``). Every
emulator a test started is stopped after it, watches and connections included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.kube_emulator import KubeEmulator


@pytest.fixture
def kube_emulator() -> Iterator[Callable[..., KubeEmulator]]:
    """Start emulators: ``kube_emulator(**options)``; options go to `KubeEmulator`."""
    started: list[KubeEmulator] = []

    def make(**options: Any) -> KubeEmulator:
        emulator = KubeEmulator(**options).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def kube(kube_emulator: Callable[..., KubeEmulator]) -> KubeEmulator:
    """A running emulator with default delays (rollouts and jobs take 0.2 s)."""
    return kube_emulator()
