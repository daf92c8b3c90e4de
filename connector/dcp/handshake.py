"""The connection handshake, as an ordered pipeline (after java-dcp-client's transport/).

Called once per connection by `Connection.open`, on the client's loop, before the connection is
handed out: HELLO (Xattr, XError, JSON, SelectBucket, Collections [, Snappy]) -> SASL (SCRAM-SHA512
by default; PLAIN only over TLS) -> SELECT_BUCKET -> for DCP connections DCP_OPEN
(Producer | IncludeXattrs | IncludeDeleteTimes) and one DCP_CONTROL per setting.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from connector.dcp import requests
from connector.dcp.errors import DcpAuthError, DcpProtocolError, KvStatusError
from connector.dcp.messages import decode_hello_features
from connector.dcp.opcodes import Feature, Opcode, Status
from connector.dcp.scram import ScramClient, ScramError, plain_payload
from connector.dcp.settings import DcpSettings

if TYPE_CHECKING:
    from connector.dcp.connection import Connection

log = logging.getLogger(__name__)

REQUIRED_CONTROLS = ("enable_noop", "set_noop_interval", "connection_buffer_size")


def dcp_controls(settings: DcpSettings) -> list[tuple[str, str]]:
    """DCP_CONTROL settings in the order sent; failures of the optional ones are logged."""
    return [
        ("enable_noop", "true"),
        ("set_noop_interval", str(max(1, int(settings.noop_interval_s)))),
        ("connection_buffer_size", str(settings.buffer_size)),
        ("enable_expiry_opcode", "true"),
        ("send_stream_end_on_client_close_stream", "true"),
    ]


async def handshake(conn: Connection, over_tls: bool) -> None:
    """Run the whole pipeline on a fresh connection; raises DcpAuthError / KvStatusError."""
    s = conn.settings
    wanted = [
        Feature.XATTR,
        Feature.XERROR,
        Feature.JSON,
        Feature.SELECT_BUCKET,
        Feature.COLLECTIONS,
    ]
    if s.snappy:
        wanted.append(Feature.SNAPPY)
    agent = f"{s.agent} {s.connection_name}"[:200]
    reply = await conn.call(requests.hello, agent, wanted)
    conn.features = frozenset(decode_hello_features(reply.value))
    if Feature.COLLECTIONS not in conn.features:
        raise DcpProtocolError(f"{conn.address} did not accept HELLO Collections")
    await authenticate(conn, over_tls)
    reply = await conn.call(requests.select_bucket, s.bucket, check=False)
    if reply.status != Status.SUCCESS:
        raise KvStatusError(
            Opcode.SELECT_BUCKET,
            reply.status,
            f"bucket {s.bucket!r} missing or not accessible to {s.username!r}",
        )
    if not conn.dcp:
        return
    await conn.call(requests.dcp_open, s.connection_name, requests.DEFAULT_OPEN_FLAGS)
    for name, value in dcp_controls(s):
        reply = await conn.call(requests.dcp_control, name, value, check=False)
        if reply.status != Status.SUCCESS:
            if name in REQUIRED_CONTROLS:
                raise KvStatusError(Opcode.DCP_CONTROL, reply.status, f"{name}={value}")
            log.warning(
                "%s refused DCP control %s=%s: %s",
                conn.address,
                name,
                value,
                Status.describe(reply.status),
            )


async def authenticate(conn: Connection, over_tls: bool) -> None:
    """SASL: PLAIN (TLS only) or SCRAM, verifying the server's signature at the end."""
    s = conn.settings
    mech = s.sasl_mechanism
    if mech == "PLAIN":
        if not over_tls:
            raise DcpAuthError("SASL PLAIN sends the password in clear: use couchbases://")
        reply = await conn.call(
            requests.sasl_auth, "PLAIN", plain_payload(s.username, s.password), check=False
        )
        if reply.status != Status.SUCCESS:
            raise DcpAuthError(
                f"authentication of {s.username!r} failed: {Status.describe(reply.status)}"
            )
        return
    scram = ScramClient(s.username, s.password, mech)
    reply = await conn.call(requests.sasl_auth, mech, scram.client_first(), check=False)
    if reply.status != Status.AUTH_CONTINUE:
        raise DcpAuthError(f"{mech} for {s.username!r} refused: {Status.describe(reply.status)}")
    try:
        final = scram.client_final(reply.value)
        reply = await conn.call(requests.sasl_step, mech, final, check=False)
        if reply.status != Status.SUCCESS:
            raise DcpAuthError(
                f"authentication of {s.username!r} failed: {Status.describe(reply.status)}"
            )
        scram.verify_server_final(reply.value)
    except ScramError as e:
        raise DcpAuthError(str(e)) from e
