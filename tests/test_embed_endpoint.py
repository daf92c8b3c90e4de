"""`cbembed serve-embed`: real HTTP round trips, including the three request forms SQL++
CURL() sends (docs/couchbase-search.md): JSON POST, form POST (the `data` option without a
Content-Type header) and GET with the data as query string (`"get": true`)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connector.config import Settings, load_settings
from connector.embed_server import EmbedService, make_server
from encoders.base import Encoder

TEXT = "quiet hotel near the beach"


def settings(tmp_path: Path) -> Settings:
    return load_settings(storage=f"embedded://{tmp_path / 'x.db'}", pipelines=[
        {"name": "hotels", "keyspace": "travel.inventory.hotels", "template": "{name}"},
        {"name": "raw", "keyspace": "travel.inventory.rooms", "template": "{name}",
         "similarity": "dot"},
        {"name": "listings", "keyspace": "travel.inventory.listings", "template": "{name}"},
    ])


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, minilm: Encoder) -> Iterator[str]:
    service = EmbedService(settings(tmp_path_factory.mktemp("embed")), token="s3cret")
    service.load()
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         token: str | None = "s3cret") -> tuple[int, dict[str, Any]]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_json_post_returns_the_pipeline_query_vector(base_url: str, minilm: Encoder) -> None:
    body = json.dumps({"pipeline": "hotels", "text": TEXT}).encode()
    status, out = call(base_url + "/embed", body, {"Content-Type": "application/json"})
    assert status == 200
    assert (out["pipeline"], out["dims"], out["model"]) == (
        "hotels", 384, "sentence-transformers/all-MiniLM-L6-v2")
    want = minilm.encode_query(TEXT, normalize=True)
    assert np.allclose(out["vector"], want, atol=1e-6)
    assert abs(np.linalg.norm(out["vector"]) - 1.0) < 1e-5  # cosine pipeline: unit length


def test_curl_form_and_get_forms(base_url: str, minilm: Encoder) -> None:
    # CURL(url, {"data": "pipeline=raw&text=..."}): a form POST, like curl -d
    form = urllib.parse.urlencode({"pipeline": "raw", "text": TEXT}).encode()
    status, posted = call(base_url + "/embed", form,
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and posted["pipeline"] == "raw"
    assert np.allclose(posted["vector"], minilm.encode_query(TEXT, normalize=False), atol=1e-6)
    # CURL(url, {"get": true, "data": "..."}): the data as query string
    status, got = call(base_url + "/embed?" + form.decode())
    assert status == 200 and got["vector"] == posted["vector"]


@pytest.mark.parametrize(("path", "data", "token", "status", "message"), [
    ("/embed", {"pipeline": "hotels"}, "s3cret", 400, "'text' must be a non-empty string"),
    ("/embed", {"text": TEXT}, "s3cret", 400, "name a 'pipeline'"),
    ("/embed", {"pipeline": "nope", "text": TEXT}, "s3cret", 404, "no pipeline 'nope'"),
    ("/embed", {"pipeline": "hotels", "text": TEXT}, "wrong", 401, "bearer token"),
    ("/embed", {"pipeline": "hotels", "text": TEXT}, None, 401, "bearer token"),
    ("/nowhere", {"text": TEXT}, "s3cret", 404, "no such path"),
    ("/embed", {"pipeline": "hotels", "text": "x" * 20000}, "s3cret", 413, "longer than"),
])
def test_errors_are_json_with_a_reason(base_url: str, path: str, data: dict[str, Any],
                                       token: str | None, status: int, message: str) -> None:
    got_status, out = call(base_url + path, json.dumps(data).encode(),
                           {"Content-Type": "application/json"}, token)
    assert got_status == status and message in out["error"]


def test_not_json_and_health(base_url: str) -> None:
    status, out = call(base_url + "/embed", b"{oops", {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in out["error"]
    status, health = call(base_url + "/health", token=None)
    assert status == 200 and health["status"] == "ok"
    assert [p["name"] for p in health["pipelines"]] == ["hotels", "raw", "listings"]
    assert {p["dims"] for p in health["pipelines"]} == {384}


def test_a_single_served_pipeline_needs_no_name(tmp_path: Path, minilm: Encoder) -> None:
    service = EmbedService(settings(tmp_path), pipelines=["raw"])
    out = service.embed({"text": TEXT})
    assert out["pipeline"] == "raw" and out["dims"] == 384
    assert service.authorized(None)  # no token configured


def test_the_documented_curl_options(base_url: str, minilm: Encoder) -> None:
    """The `$embed` options object of docs/couchbase-search.md, sent the way CURL() sends it
    (its `header` and `data`, POST) to the running endpoint."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "couchbase-search.md").read_text()
    (line,) = [x for x in docs.splitlines() if x.startswith("\\set -$embed ")]
    options = json.loads(line.removeprefix("\\set -$embed ").rstrip(";"))
    assert options["request"] == "POST"
    name, _, value = options["header"].partition(": ")
    status, out = call(base_url + "/embed", options["data"].encode(), {name: value})
    assert status == 200 and out["pipeline"] == "listings" and out["dims"] == 384
    text = json.loads(options["data"])["text"]
    assert np.allclose(out["vector"], minilm.encode_query(text, normalize=True), atol=1e-6)
