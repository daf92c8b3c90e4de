"""DCP flow control bookkeeping for one connection. Pure: it says when to send a BUFFER_ACK.

The producer stops sending once `connection_buffer_size` bytes are un-acknowledged. Every DCP
message except NOOP counts `24 + bodylen` (its size on the wire). The client acknowledges bytes
only once the consumer has *taken* the message (the stream multiplexer calls `consumed` when the
consumer pulls the next item), so a consumer that stops pulling stops the acks and therefore the
server: that is the backpressure. Acks are batched: one BUFFER_ACK per ~20% of the buffer.

Called on the consumer's event loop by `stream.py`; `connection.py` writes the ack it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FlowControl:
    buffer_size: int
    ack_ratio: float = 0.2
    received: int = 0
    """Bytes of DCP messages read from the socket (for stats and the backpressure test)."""
    acked: int = 0
    """Bytes acknowledged to the server so far."""
    taken: int = 0
    """Bytes the consumer has taken (acknowledged or waiting for the watermark)."""
    _pending: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.buffer_size <= 0:
            raise ValueError("connection buffer size must be positive")
        self.threshold = max(1, int(self.buffer_size * self.ack_ratio))

    def on_received(self, nbytes: int) -> None:
        """Reader side: a DCP message of `nbytes` arrived (before the consumer saw it)."""
        self.received += nbytes

    def consumed(self, nbytes: int) -> int:
        """The consumer took a message of `nbytes`. Returns the byte count to acknowledge now
        (0: not yet at the watermark)."""
        self.taken += nbytes
        self._pending += nbytes
        if self._pending >= self.threshold:
            n, self._pending = self._pending, 0
            self.acked += n
            return n
        return 0

    @property
    def queued(self) -> int:
        """Bytes received and not yet taken by the consumer (what sits in the client)."""
        return self.received - self.taken

    @property
    def unacked(self) -> int:
        """Bytes the server counts as in flight (received and not yet acknowledged)."""
        return self.received - self.acked

    @property
    def pending(self) -> int:
        """Bytes consumed but held back until the watermark."""
        return self._pending
