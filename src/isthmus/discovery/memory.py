"""Garbage collection tuned for the control plane: many long-lived objects (resources, snapshots, the state of
thousands of streams) and short bursts of work (pushes).

Python's collector would scan every long-lived object in its full collections, in the middle of a push; that
pause is the tail of push latency. Here the young generations are collected less often
(`ISTHMUS_GC_THRESHOLDS`), and what exists after start-up and after each maintenance round is frozen, so
collections skip it; every `ISTHMUS_GC_MAINTENANCE` seconds everything is unfrozen, collected once (garbage
cycles among frozen objects, such as closed streams, are reclaimed then) and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from isthmus import tunables

log = logging.getLogger(__name__)


def configure() -> None:
    thresholds = tunables.GC_THRESHOLDS.get()
    try:
        values = tuple(int(v) for v in thresholds.split(","))
        if len(values) != 3 or min(values) <= 0:
            raise ValueError
    except ValueError:
        log.error(
            "%s=%r is not three positive numbers: keeping Python's", tunables.GC_THRESHOLDS.env, thresholds
        )
        return
    gc.set_threshold(*values)


def freeze() -> None:
    gc.collect()
    gc.freeze()


async def maintain(arrivals: Callable[[], int]) -> None:
    """Freeze once a wave of new long-lived state has settled (`arrivals`: a count of, say, proxies that
    completed their initial sync; 100 more and then a quiet second); every ISTHMUS_GC_MAINTENANCE seconds
    unfreeze, collect everything once, freeze again."""
    interval = tunables.GC_MAINTENANCE.get()
    frozen_at, last_seen, next_round = arrivals(), arrivals(), time.monotonic() + interval
    while True:
        await asyncio.sleep(1.0)
        now, seen = time.monotonic(), arrivals()
        if seen - frozen_at >= 100 and seen == last_seen:
            freeze()
            frozen_at = seen
        last_seen = seen
        if now >= next_round:
            started = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            gc.freeze()
            next_round = now + interval
            took = (time.perf_counter() - started) * 1000
            log.debug("gc: %d objects collected in %.0f ms", collected, took)
