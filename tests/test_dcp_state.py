"""PartitionState (pending vs current snapshot, rollback trimming, resume) and flow control."""

from __future__ import annotations

import pytest

from connector.dcp.flow_control import FlowControl
from connector.dcp.state import PartitionState
from connector.events import ZERO_OFFSET, FailoverEntry, PartitionOffset, Snapshot


def test_from_zero():
    st = PartitionState.from_offset(3, ZERO_OFFSET)
    assert st.stream_request_params() == (0, 0, 0, 0)
    assert st.failover_log == [] and st.offset() == ZERO_OFFSET


def test_from_checkpoint_uses_its_vbuuid_and_snapshot():
    off = PartitionOffset(0xAB, 15, Snapshot(10, 20))
    st = PartitionState.from_offset(1, off)
    assert st.stream_request_params() == (15, 0xAB, 10, 20)
    assert st.offset() == off


def test_marker_is_pending_until_first_item():
    st = PartitionState.from_offset(0, PartitionOffset(0xA, 5, Snapshot(1, 5)))
    st.on_snapshot_marker(6, 9)
    # nothing of the new snapshot delivered: resume must still describe the old one
    assert st.offset() == PartitionOffset(0xA, 5, Snapshot(1, 5))
    assert st.pending == Snapshot(6, 9)
    assert st.on_item(6) == Snapshot(6, 9)
    assert st.pending is None and st.offset() == PartitionOffset(0xA, 6, Snapshot(6, 9))
    assert st.on_item(8) == Snapshot(6, 9)
    assert st.stream_request_params() == (8, 0xA, 6, 9)


def test_second_marker_replaces_unpromoted_first():
    st = PartitionState(0)
    st.on_snapshot_marker(1, 3)
    st.on_snapshot_marker(4, 6)  # e.g. a snapshot whose items were all filtered out
    assert st.on_item(5) == Snapshot(4, 6)


@pytest.mark.parametrize(
    ("snapshot", "pending", "advanced", "expected"),
    [
        (Snapshot(1, 5), None, 5, Snapshot(1, 5)),  # end of the current snapshot: keep it
        (Snapshot(1, 5), Snapshot(6, 9), 9, Snapshot(6, 9)),  # only message of a snapshot
        (Snapshot(1, 5), None, 12, Snapshot(12, 12)),  # beyond any known snapshot
    ],
)
def test_seqno_advanced(snapshot, pending, advanced, expected):
    st = PartitionState(0, seqno=snapshot.start, snapshot=snapshot, pending=pending)
    assert st.on_seqno_advanced(advanced) == expected
    assert st.seqno == advanced and st.pending is None
    st.offset()  # always a valid PartitionOffset


def test_item_outside_marker_keeps_offset_valid():
    st = PartitionState(0)
    st.on_snapshot_marker(5, 6)
    st.on_item(9)  # a misbehaving producer
    assert st.offset().seqno == 9


LOG = [FailoverEntry(0xC, 200), FailoverEntry(0xB, 100), FailoverEntry(0xA, 0)]


@pytest.mark.parametrize(
    ("to", "uuids"),
    [
        (250, [0xC, 0xB, 0xA]),
        (200, [0xC, 0xB, 0xA]),
        (150, [0xB, 0xA]),
        (100, [0xB, 0xA]),
        (99, [0xA]),
        (0, [0xA]),
    ],
)
def test_rollback_trims_failover_log(to, uuids):
    st = PartitionState(
        0, list(LOG), seqno=300, snapshot=Snapshot(290, 310), pending=Snapshot(311, 320)
    )
    off = st.rollback(to)
    assert [e.vbuuid for e in st.failover_log] == uuids
    assert off == PartitionOffset(uuids[0], to, Snapshot(to, to))
    assert st.pending is None
    assert st.stream_request_params() == (to, uuids[0], to, to)


def test_rollback_past_every_entry_gives_uuid_zero():
    st = PartitionState(0, [FailoverEntry(0xC, 50)], seqno=60, snapshot=Snapshot(60, 60))
    assert st.rollback(10) == PartitionOffset(0, 10, Snapshot(10, 10))


def test_checkpoint_uuid_survives_rollback_before_real_log_arrives():
    st = PartitionState.from_offset(0, PartitionOffset(0xBEEF, 500, Snapshot(500, 500)))
    assert st.rollback(120).vbuuid == 0xBEEF


def test_failover_log_replaced_on_stream_open():
    st = PartitionState.from_offset(0, PartitionOffset(0x1, 5, Snapshot(5, 5)))
    st.on_failover_log([FailoverEntry(0x2, 4), FailoverEntry(0x1, 0)])
    assert st.vbuuid == 0x2


def test_manifest_uid_only_moves_forward():
    st = PartitionState(0)
    st.on_manifest(5)
    st.on_manifest(3)
    assert st.manifest_uid == 5


# --- flow control -----------------------------------------------------------------------------


def test_flow_control_acks_at_twenty_percent():
    fc = FlowControl(1000)
    assert fc.threshold == 200
    acks = []
    for _ in range(10):
        fc.on_received(70)
        acks.append(fc.consumed(70))
    assert acks == [0, 0, 210, 0, 0, 210, 0, 0, 210, 0]
    assert fc.acked == 630 and fc.pending == 70 and fc.unacked == 70


def test_flow_control_no_ack_without_consumption():
    fc = FlowControl(1000)
    for _ in range(20):
        fc.on_received(50)
    assert fc.unacked == 1000 and fc.acked == 0


def test_flow_control_rejects_bad_size():
    with pytest.raises(ValueError):
        FlowControl(0)
