"""A small HTTP endpoint that embeds a query with a pipeline's encoder, for SQL++ users without
Python: the Query service's CURL() function can call it (see docs/couchbase-search.md).

    POST /embed   {"pipeline": "hotels", "text": "quiet hotel"}      (application/json)
    POST /embed   pipeline=hotels&text=quiet+hotel                    (form, CURL's "data")
    GET  /embed?pipeline=hotels&text=quiet+hotel                      (CURL's "get": true)
      -> 200 {"vector": [...], "dims": 384, "model": "...", "pipeline": "hotels"}
    GET  /health  -> {"status": "ok", "pipelines": [{"name", "model", "dims"}]}

`pipeline` may be left out when only one is configured. Errors are JSON {"error": "..."} with
400 (bad request), 401 (token), 404 (unknown pipeline or path), 413 (too large). With a token
configured every /embed request needs `Authorization: Bearer <token>`.

Threads: a ThreadingHTTPServer; encoders are called under one lock (they are not re-entrant),
the same vector the pipeline would make for a query (normalised for cosine pipelines).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connector.config import PipelineConfig, Settings
from encoders.base import Encoder
from encoders.registry import load_encoder

log = logging.getLogger("cbembed.embed_server")
MAX_BODY = 64 * 1024
MAX_TEXT = 16 * 1024


class _Failure(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class EmbedService:
    """The endpoint's logic, independent of HTTP (tested directly too)."""

    def __init__(self, settings: Settings, pipelines: list[str] | None = None,
                 token: str | None = None) -> None:
        chosen = [settings.pipeline(n) for n in pipelines] if pipelines else settings.pipelines
        self.pipelines: dict[str, PipelineConfig] = {p.name: p for p in chosen}
        self.token = token or None
        self._encoders: dict[str, Encoder] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load every pipeline's encoder now (instead of on the first request)."""
        for p in self.pipelines.values():
            self.encoder(p)

    def encoder(self, p: PipelineConfig) -> Encoder:
        with self._lock:
            enc = self._encoders.get(p.name)
            if enc is None:
                enc = self._encoders[p.name] = load_encoder(p.encoder)
            return enc

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "pipelines": [
            {"name": p.name, "model": p.encoder.model,
             "dims": self._encoders[p.name].dimension if p.name in self._encoders else None}
            for p in self.pipelines.values()]}

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Failure(HTTPStatus.BAD_REQUEST, "'text' must be a non-empty string")
        if len(text) > MAX_TEXT:
            raise _Failure(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"'text' is longer than {MAX_TEXT} characters")
        name = request.get("pipeline")
        if name is None:
            if len(self.pipelines) != 1:
                raise _Failure(HTTPStatus.BAD_REQUEST, "name a 'pipeline': one of "
                               + ", ".join(self.pipelines))
            name = next(iter(self.pipelines))
        p = self.pipelines.get(str(name))
        if p is None:
            raise _Failure(HTTPStatus.NOT_FOUND, f"no pipeline {name!r} (served: "
                           f"{', '.join(self.pipelines)})")
        enc = self.encoder(p)
        if "text" not in enc.query_modalities:
            raise _Failure(HTTPStatus.BAD_REQUEST, f"pipeline {p.name} takes no text queries")
        with self._lock:
            vec = enc.encode_query(text, normalize=p.similarity == "cosine")
        values = [float(x) for x in vec]
        return {"vector": values, "dims": len(values), "model": p.encoder.model,
                "pipeline": p.name}


def _parse_request(method: str, path: str, content_type: str, body: bytes) -> dict[str, Any]:
    query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
    if method == "GET" or not body:
        return query
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _Failure(HTTPStatus.BAD_REQUEST, f"body is not JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise _Failure(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        return {**query, **parsed}
    form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    return {**query, **form}


def make_handler(service: EmbedService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cbembed-embed/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            route = urlsplit(self.path).path.rstrip("/")
            try:
                if route == "/health" and method == "GET":
                    self._reply(HTTPStatus.OK, service.health())
                    return
                if route != "/embed":
                    raise _Failure(HTTPStatus.NOT_FOUND, f"no such path {route or '/'}")
                if not service.authorized(self.headers.get("Authorization")):
                    raise _Failure(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise _Failure(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"body larger than {MAX_BODY} bytes")
                body = self.rfile.read(length) if length else b""
                request = _parse_request(method, self.path,
                                         self.headers.get("Content-Type", ""), body)
                self._reply(HTTPStatus.OK, service.embed(request))
            except _Failure as e:
                self._reply(e.status, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - the endpoint answers, it does not die
                log.exception("embed request failed")
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}"})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

    return Handler


def make_server(service: EmbedService, host: str = "127.0.0.1", port: int = 8765
                ) -> ThreadingHTTPServer:
    """A bound server (port 0 picks a free one: `server.server_address`); call
    `serve_forever()`, and `shutdown()` from another thread to stop it."""
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    return server
