"""Images on Couchbase: our DCP client reads the test server's feed, the tiny CLIP embeds the
photo each document names, the SDK writes the vector back beside the text pipeline's; a text
query then finds the photo through the Search service (tests/cbserver) and through the
vectors read back; a bad photo is a dead letter and the stream goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from connector.config import Settings, load_settings
from connector.couchbase import sdk
from connector.demo import shapes
from connector.search import Searcher
from connector.service import run_until_idle
from tests.cbserver import CouchbaseTestServer
from tests.conftest import dead_letters
from tests.media import TINY_CLIP

KS = "default.gallery.photos"
PICTURES = [("red", "square"), ("blue", "circle"), ("green", "star"), ("yellow", "triangle"),
            ("purple", "cross"), ("orange", "star")]


@pytest.fixture
def srv() -> Iterator[CouchbaseTestServer]:
    with CouchbaseTestServer(collections={"gallery": ["photos"]}, num_vbuckets=16,
                             server_version="8.0.0") as server:
        yield server


def settings_for(srv: CouchbaseTestServer, root: Path) -> Settings:
    return load_settings(
        storage=srv.connection_string,
        couchbase={"password": "password", "timeout_s": 5},
        pipelines=[
            {"name": "text", "keyspace": KS, "template": "{title}. {caption}",
             "vector_field": "text_vec", "index": {"gsi": "none"}},
            {"name": "image", "keyspace": KS, "source_field": "photo", "template": "{caption}",
             "vector_field": "image_vec", "encoder": TINY_CLIP, "index": {"gsi": "none"},
             "source": {"kind": "path", "root": str(root)}},
        ],
        connector={"poll_interval_s": 0.05, "max_wait_ms": 5, "checkpoint_interval_s": 0.2},
    )


def test_a_photo_gets_its_vector_in_couchbase_and_a_text_query_finds_it(
    srv: CouchbaseTestServer, tmp_path: Path,
) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    for i, (colour, shape) in enumerate(PICTURES):
        shapes.make_shape_image(shape, colour, seed=4200 + i).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"GIF89a but not really")
    s = settings_for(srv, root)
    cluster = sdk.connect_sync(s)
    try:
        photos = cluster.bucket("default").scope("gallery").collection("photos")
        for i, (colour, shape) in enumerate(PICTURES):
            photos.upsert(f"photo{i}", {"title": f"Photo {i}", "photo": f"{i}.png",
                                        "caption": shapes.class_caption(colour, shape)})
        photos.upsert("broken", {"title": "Broken", "photo": "broken.png", "caption": "x"})
        photos.upsert("elsewhere", {"title": "Out", "photo": "/etc/hosts", "caption": "x"})
        summary = run_until_idle(s).pipelines
        # Each bad photo fails once per change it is seen in: its own, and (timing allowing)
        # the text pipeline's write-back to the same document.
        assert summary["image"]["embedded"] == 6 and 2 <= summary["image"]["failed"] <= 4
        assert summary["text"]["embedded"] == 8 and summary["text"]["failed"] == 0

        # Both vectors are in the document, with their own hashes in the system xattr.
        import couchbase.subdocument as SD

        doc = photos.get("photo0").content_as[dict]
        assert len(doc["image_vec"]) == 64 and len(doc["text_vec"]) == 384
        meta = photos.lookup_in("photo0", [SD.get("_cbembed", xattr=True)]).content_as[dict](0)
        assert set(meta) == {"text", "image"} and meta["image"]["d"] == 64
        from encoders.registry import load_encoder

        clip = load_encoder(s.pipelines[1].encoder)
        want = clip.encode([shapes.make_shape_image("square", "red", seed=4200)],
                           normalize=True).vectors[0]
        assert np.allclose(np.asarray(doc["image_vec"], dtype=np.float32), want, atol=1e-4)

        # A text query finds the photo from the vectors read back...
        keys = [f"photo{i}" for i in range(len(PICTURES))]
        matrix = np.array([photos.get(k).content_as[dict]["image_vec"] for k in keys])
        for i, (colour, shape) in enumerate(PICTURES):
            q = clip.encode_query(shapes.class_caption(colour, shape), normalize=True)
            assert keys[int(np.argmax(matrix @ q))] == f"photo{i}"

        # ...and through the Search service, with the pipeline's index applied.
        from connector.couchbase.index_manager import apply_indexes

        actions, _ = apply_indexes(cluster, s, {"text": 384, "image": 64})
        assert {(a.pipeline, a.action) for a in actions if a.kind == "search"} == {
            ("text", "created"), ("image", "created")}
        searcher = Searcher.from_settings(s)
        try:
            hits = searcher.vector("a green star", pipeline="image", k=2, fields=["caption"])
            assert hits[0].id == "photo2" and hits[0].fields["caption"] == "a green star"
            assert searcher.vector(root / "4.png", pipeline="image", k=1)[0].id == "photo4"
        finally:
            searcher.close()

        # Bad photos are dead letters with their reasons.
        letters = {d.key: d for d in dead_letters(s)}
        assert {k: d.kind for k, d in letters.items()} == {
            "broken": "undecodable", "elsewhere": "outside_root"}

        # A title edit (the application writes back what it read) re-embeds the text only.
        current = photos.get("photo1").content_as[dict]
        photos.upsert("photo1", {**current, "title": "Renamed"})
        again = run_until_idle(s).pipelines
        assert again["text"]["embedded"] == 9 and again["image"]["embedded"] == 6
        after = photos.get("photo1").content_as[dict]
        assert after["image_vec"] == current["image_vec"] and after["title"] == "Renamed"
        assert after["text_vec"] != current["text_vec"]
    finally:
        cluster.close()
