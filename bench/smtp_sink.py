"""A minimal SMTP sink for the benchmarks: accepts everything, counts messages, keeps nothing.

    python bench/smtp_sink.py PORT [DELAY_MS]

DELAY_MS emulates a remote server: each DATA is answered that many milliseconds late.
Prints READY when it listens; prints the count on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        return "250 OK"


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    sink = Sink(delay)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        signal.pause()
    controller.stop()
    print(sink.count, flush=True)


if __name__ == "__main__":
    main()
