"""Minimal asyncio HTTP/1.1 server with Basic auth, shared by the mgmt, query and search
ports. One ``serve_http`` coroutine per connection, on the server loop; keep-alive,
Content-Length or chunked request bodies. Every request is captured in
``ServerContext.http_requests`` before it is routed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from .context import CapturedRequest, ServerContext

_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
            401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    service: str

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def parts(self) -> list[str]:
        return [unquote(p) for p in self.path.strip("/").split("/") if p]


@dataclass
class HttpReply:
    status: int = 200
    body: Any = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Router = Callable[[HttpRequest], Awaitable[HttpReply]]


def _authorized(ctx: ServerContext, headers: dict[str, str]) -> bool:
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
    except ValueError:
        return False
    return user == ctx.username and password == ctx.password


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readline()
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def serve_http(ctx: ServerContext, service: str, router: Router,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve one HTTP connection until the client closes it."""
    ctx.writers.add(writer)
    try:
        while True:
            line = await reader.readline()
            if not line.strip():
                return
            method, target, _version = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await _read_body(reader, headers)
            path, _, query = target.partition("?")
            req = HttpRequest(method.upper(), path, parse_qs(query), headers, body, service)
            with ctx.lock:
                ctx.http_requests.append(CapturedRequest(req.method, path, dict(headers),
                                                         req.json(), service, body, query))
            if not _authorized(ctx, headers):
                reply = HttpReply(401, {"error": "Unauthorized"})
            else:
                try:
                    reply = await router(req)
                except Exception as exc:  # a bug in a handler must not hang the client
                    reply = HttpReply(500, {"status": "fail", "error": f"test server: {exc!r}"})
            payload = reply.encode()
            head = (f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
                    f"Content-Type: {reply.content_type}\r\n"
                    f"Content-Length: {len(payload)}\r\n"
                    "Connection: keep-alive\r\n\r\n")
            writer.write(head.encode() + payload)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        ctx.writers.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()
