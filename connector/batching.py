"""Dynamic batching: take what is ready, up to `max_batch`, waiting at most `max_wait` for more.

The first item of a batch is awaited without limit (nothing to do until something arrives);
after it, items already queued are taken at once, and the batch closes when it is full or when
`max_wait` has passed since its first item. Called on the connector loop by the encode stage.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def next_batch(queue: asyncio.Queue[T], max_batch: int, max_wait_s: float) -> list[T]:
    batch = [await queue.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(batch) < max_batch:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return batch


def backoff_delay(attempt: int, base_s: float = 0.1, cap_s: float = 10.0) -> float:
    """Upper bound of truncated exponential backoff for retry `attempt` (0-based); callers
    draw uniformly below it (full jitter)."""
    return min(cap_s, base_s * 2 ** min(attempt, 30))


def backoff_delays(attempts: int, base_s: float = 0.1, cap_s: float = 5.0) -> list[float]:
    """The upper bounds for `attempts` retries (see `backoff_delay`)."""
    return [backoff_delay(i, base_s, cap_s) for i in range(attempts)]
