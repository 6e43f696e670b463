"""The event loop workers run on: uvloop where it exists (measured: 0.62 → 0.88 of the
smtplib baseline in bench/dispatch.py), the standard loop elsewhere; and the garbage
collector tuned for a long-running process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Collect the youngest generation every 10,000 container allocations, not 700: a batch
# allocates thousands of short-lived rows and dicts, and each collection also walks what
# survived the last ones.
YOUNGEST_THRESHOLD = 10_000


def settle_collector() -> None:
    """What a process holds when it starts serving (modules, settings, compiled templates)
    lives as long as the process: frozen, the collector stops walking it. Measured in
    bench/campaign.py: collections took ~16 % of the time, ~4 % after."""
    gc.freeze()
    gc.set_threshold(YOUNGEST_THRESHOLD, 20, 20)


def run(main: Coroutine[Any, Any, T]) -> T:
    settle_collector()
    try:
        import uvloop
    except ImportError:  # not on Windows
        return asyncio.run(main)
    return uvloop.run(main)
