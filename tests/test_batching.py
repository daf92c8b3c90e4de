import asyncio

import pytest

from connector.batching import backoff_delay, backoff_delays, next_batch


@pytest.mark.parametrize(
    ("attempt", "bound"), [(0, 0.1), (1, 0.2), (3, 0.8), (7, 10.0), (100, 10.0)]
)
def test_backoff_is_exponential_and_truncated(attempt: int, bound: float) -> None:
    assert backoff_delay(attempt) == pytest.approx(bound)


def test_backoff_delays_list() -> None:
    assert backoff_delays(4, base_s=1, cap_s=5) == [1, 2, 4, 5]


async def test_batch_takes_what_is_ready_up_to_the_limit() -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(10):
        q.put_nowait(i)
    assert await next_batch(q, 4, 1.0) == [0, 1, 2, 3]
    assert await next_batch(q, 100, 0.0) == [4, 5, 6, 7, 8, 9]


async def test_partial_batch_closes_after_max_wait() -> None:
    q: asyncio.Queue[int] = asyncio.Queue()
    q.put_nowait(1)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, q.put_nowait, 2)
    loop.call_later(0.5, q.put_nowait, 3)
    t = loop.time()
    assert await next_batch(q, 10, 0.1) == [1, 2]
    assert loop.time() - t < 0.45
