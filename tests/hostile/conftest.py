"""Every hostile test fails, rather than hangs, if something blocks (a FIFO opened by mistake)."""

from __future__ import annotations

import signal

import pytest

SECONDS = 60


@pytest.fixture(autouse=True)
def fail_instead_of_hanging():
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(signum, frame):
        raise TimeoutError(f"blocked for {SECONDS} s: something opened a FIFO or waited forever")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
