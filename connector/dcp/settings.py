"""DcpSettings: everything the DCP client needs to know, validated once on construction."""

from __future__ import annotations

from dataclasses import dataclass

from connector.errors import ConfigError


@dataclass(frozen=True)
class DcpSettings:
    connection_string: str
    username: str
    password: str
    bucket: str
    connection_name: str
    """DCP connection name (<= 200 bytes). Opening a second connection with the same name on a
    node closes the first, so give each group member its own."""
    ca_cert: str | None = None
    """PEM file to trust for couchbases:// (None: the system store)."""
    buffer_size: int = 10 * 1024 * 1024
    """connection_buffer_size per DCP connection: the most un-acknowledged bytes in flight."""
    noop_interval_s: float = 120
    """set_noop_interval; a connection silent for 2x this long is treated as dead."""
    connect_timeout_s: float = 10
    request_timeout_s: float = 10
    sasl_mechanism: str = "SCRAM-SHA512"
    """SCRAM-SHA512 (default), SCRAM-SHA256, SCRAM-SHA1, or PLAIN (only with couchbases://)."""
    snappy: bool = False
    """Negotiate Snappy so the server may send compressed values (decoded in pure Python)."""
    tls_verify: bool = True
    reconnect_base_s: float = 0.1
    reconnect_max_s: float = 10.0
    max_reconnect_attempts: int | None = None
    """Consecutive failed reconnects before the stream raises; None retries forever."""
    agent: str = "cbembed-dcp/0.1"

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        for name in ("connection_string", "bucket", "connection_name"):
            if not getattr(self, name):
                problems.append((name, "must not be empty"))
        if len(self.connection_name.encode()) > 200:
            problems.append(("connection_name", "must be at most 200 bytes"))
        if self.buffer_size < 1024:
            problems.append(("buffer_size", "must be at least 1024 bytes"))
        if self.noop_interval_s < 1:
            problems.append(("noop_interval_s", "must be at least 1 second"))
        for name in ("connect_timeout_s", "request_timeout_s", "reconnect_base_s"):
            if getattr(self, name) <= 0:
                problems.append((name, "must be positive"))
        if self.reconnect_max_s < self.reconnect_base_s:
            problems.append(("reconnect_max_s", "must be >= reconnect_base_s"))
        if self.sasl_mechanism not in ("SCRAM-SHA512", "SCRAM-SHA256", "SCRAM-SHA1", "PLAIN"):
            problems.append(("sasl_mechanism", f"unknown mechanism {self.sasl_mechanism!r}"))
        if problems:
            raise ConfigError(problems, source="DcpSettings")
