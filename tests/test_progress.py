import pytest

from connector.errors import InvalidOffsetError
from connector.events import PartitionOffset, Snapshot
from connector.progress import PartitionProgress

S = Snapshot(1, 100)


def prog(*seqnos: int) -> PartitionProgress:
    p = PartitionProgress(PartitionOffset.at(0))
    for s in seqnos:
        p.received(s, S)
    return p


@pytest.mark.parametrize(
    ("received", "finished", "checkpoint"),
    [
        ([], [], 0),
        ([1, 2, 3], [], 0),
        ([1, 2, 3], [1], 1),
        ([1, 2, 3], [2, 3], 0),  # 1 unfinished: nothing may be skipped
        ([1, 2, 3], [2, 3, 1], 3),
        ([5, 9, 12], [5, 12], 5),
        ([5, 9, 12], [12, 9, 5], 12),
        ([5, 9, 12], [9], 0),
    ],
)
def test_checkpoint_is_highest_contiguous_finished(
    received: list[int], finished: list[int], checkpoint: int
) -> None:
    p = prog(*received)
    for s in finished:
        p.finished(s)
    assert p.checkpoint(7).seqno == checkpoint
    assert p.checkpoint(7).vbuuid == 7
    assert p.in_flight == len(received) - len(finished)


def test_checkpoint_carries_the_snapshot_of_its_event() -> None:
    p = PartitionProgress(PartitionOffset.at(0))
    p.received(4, Snapshot(3, 6))
    p.received(8, Snapshot(7, 10))
    p.finished(4)
    p.finished(8)
    cp = p.checkpoint(1)
    assert (cp.seqno, cp.snapshot) == (8, Snapshot(7, 10))


def test_out_of_order_receive_is_refused() -> None:
    p = prog(5)
    with pytest.raises(ValueError, match="out of order"):
        p.received(5, S)


def test_seqno_advanced_moves_only_when_earlier_work_is_done() -> None:
    p = prog(3)
    p.advance_to(10)
    assert p.checkpoint(0).seqno == 0
    p.finished(3)
    assert p.checkpoint(0).seqno == 10


def test_rollback_forgets_in_flight_work() -> None:
    p = prog(3, 4, 5)
    p.finished(3)
    p.reset(PartitionOffset.at(2))
    p.finished(4)  # a late completion from before the rollback is ignored
    assert p.checkpoint(0).seqno == 2 and p.in_flight == 0
    p.received(3, S)
    p.finished(3)
    assert p.checkpoint(0).seqno == 3


def test_offset_refuses_seqno_outside_snapshot() -> None:
    with pytest.raises(InvalidOffsetError, match="outside its snapshot"):
        PartitionOffset(1, 50, Snapshot(60, 70))
