"""couchbases:// through a TLS-terminating proxy in front of the (plain) test server.

The test server speaks plain KV only and advertises no kvSSL port, so the proxy holds a
self-signed certificate made with the openssl CLI and the test points the client's node at it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.dcp import DcpClient, DcpConnectionError, DcpSettings
from connector.dcp.topology import KvNode
from connector.events import ChangeEvent
from tests.cbserver import CouchbaseTestServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def tls_proxy(cert: Path, key: Path, target: int) -> asyncio.Server:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def on_conn(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
            finally:
                w.close()

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw), return_exceptions=True)

    return await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    return {"good": make_cert(d, "good"), "other": make_cert(d, "other")}


@pytest.fixture
async def setup(
    certs: dict[str, tuple[Path, Path]],
) -> AsyncIterator[tuple[CouchbaseTestServer, int]]:
    srv = CouchbaseTestServer(num_vbuckets=4, collections={"inventory": ["hotels"]})
    await srv.start_async()
    proxy = await tls_proxy(*certs["good"], srv.ports.kv)
    yield srv, proxy.sockets[0].getsockname()[1]
    proxy.close()
    await srv.stop_async()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA512"])
async def test_stream_over_tls(
    setup: tuple[CouchbaseTestServer, int], certs: dict[str, tuple[Path, Path]], mechanism: str
) -> None:
    srv, port = setup
    c = DcpClient(
        DcpSettings(
            connection_string=f"couchbases://127.0.0.1:{port}",
            username="Administrator",
            password="password",
            bucket="default",
            connection_name="cbembed/tls",
            ca_cert=str(certs["good"][0]),
            sasl_mechanism=mechanism,
        )
    )
    await c.connect()
    c._config = dataclasses.replace(
        c.config, nodes=(KvNode("127.0.0.1", srv.ports.kv, tls_port=port),)
    )
    srv.upsert("inventory", "hotels", "secure", {"tls": True})
    stream = c.stream(range(4), {}, ["inventory.hotels"])

    async def first_change() -> ChangeEvent:
        async for item in stream:
            if isinstance(item, ChangeEvent):
                return item
        raise AssertionError("stream ended")

    ev = await asyncio.wait_for(first_change(), 10)
    assert ev.key == "secure"
    await c.close()


async def test_untrusted_certificate_is_refused(
    setup: tuple[CouchbaseTestServer, int], certs: dict[str, tuple[Path, Path]]
) -> None:
    _, port = setup
    c = DcpClient(
        DcpSettings(
            connection_string=f"couchbases://127.0.0.1:{port}",
            username="Administrator",
            password="password",
            bucket="default",
            connection_name="cbembed/tls",
            ca_cert=str(certs["other"][0]),
            connect_timeout_s=3,
        )
    )
    with pytest.raises(DcpConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        await c.connect()
    await c.close()
