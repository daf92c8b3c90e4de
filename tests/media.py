"""Helpers for the image and audio tests: small PNG and WAV files, a real HTTP server on
loopback (threads; routes set per test), the tiny CLIP encoder config."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

TINY_CLIP = {"kind": "open-clip", "model": "cbembed/tiny-clip"}


def png(colour: tuple[int, int, int] = (200, 20, 20), size: int = 16, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), colour if mode == "RGB" else (*colour, 0)).save(buf, "PNG")
    return buf.getvalue()


def wav(samples: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> bytes:
    x = np.clip(samples, -1, 1)
    if width == 1:
        raw = (x * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = (x * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = (x * (2**23 - 1)).astype("<i4").tobytes()
        raw = b"".join(v[i:i + 3] for i in range(0, len(v), 4))
    else:
        raw = (x * (2**31 - 1)).astype("<i4").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Any] = {}
    hits: dict[str, int] = {}

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        n = self.hits[path] = self.hits.get(path, 0) + 1
        route = self.routes.get(path)
        if route is None:
            self.send_error(404, "no such picture")
            return
        status, headers, body = route(n) if callable(route) else route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if callable(body):
            body(self.wfile)
        else:
            self.wfile.write(body)


@contextmanager
def serve_http() -> Iterator[tuple[str, dict[str, Any], dict[str, int]]]:
    """(base URL, routes, hits): routes map a path to (status, headers, body) or to a
    function of the hit count returning that; a callable body writes to the socket."""
    routes: dict[str, Any] = {}
    hits: dict[str, int] = {}
    handler = type("H", (_Handler,), {"routes": routes, "hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes, hits
    finally:
        server.shutdown()
        server.server_close()
