"""The producer's rollback decision for a stream request, as a pure function.

From kv_engine ``docs/dcp/documentation/rollback.md`` (and the failover table's documented
behaviour): no rollback for start 0 unless strict; a purge above the consumer's start
forces a rollback to 0; an unknown vbucket uuid rolls back to 0; otherwise the consumer may
keep history up to ``upper`` (the seqno of the next newer failover entry, or the high
seqno), and a snapshot reaching past ``upper`` rolls back to ``upper`` or to its start.
"""

from __future__ import annotations


def needs_rollback(
    start: int,
    high: int,
    vbuuid: int,
    snap_start: int,
    snap_end: int,
    failover_log: list[tuple[int, int]],
    purge_seqno: int = 0,
    *,
    strict: bool = False,
) -> int | None:
    """Seqno to roll back to, or None. ``failover_log`` is newest first."""
    if start == 0 and (not strict or vbuuid == 0):
        return None
    if start < purge_seqno and start != 0:
        return 0
    upper = high
    for i, (uuid, _seqno) in enumerate(failover_log):
        if uuid == vbuuid:
            if i > 0:
                upper = failover_log[i - 1][1]
            break
    else:
        return 0
    if start == snap_start:
        snap_end = start
    if snap_end <= upper:
        return None
    if start == snap_end:
        snap_start = start
    return upper if upper < snap_start else snap_start
