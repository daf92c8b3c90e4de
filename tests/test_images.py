"""Image pipelines end to end on the embedded store with the project's tiny CLIP
(encoders/assets/tiny_clip): every source kind, every failure kind as a dead letter, files
changed in place, text-to-image / image-to-image / hybrid search, two pipelines on one
collection, and `cbembed search --image`."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from connector.cli import main as cbembed_main
from connector.config import EncoderConfig, Settings, load_settings
from connector.demo import shapes
from connector.embedded import EmbeddedDatabase
from connector.errors import EncoderError, SearchError
from connector.search import Searcher
from encoders.base import Encoder
from encoders.registry import load_encoder
from tests.conftest import dead_letters, run_until_idle, stored
from tests.media import TINY_CLIP, png, serve_http

KS = "media.gallery.photos"
HELDOUT_SEED = 11  # the tiny CLIP was trained on iter_dataset seed 0 only


@pytest.fixture(scope="session")
def clip() -> Encoder:
    return load_encoder(EncoderConfig(**TINY_CLIP))


def photo_settings(db: Path, root: Path | None = None, **pipeline: Any) -> Settings:
    p: dict[str, Any] = {
        "name": "photos", "keyspace": KS, "source_field": "photo", "template": "{caption}",
        "vector_field": "image_vec", "encoder": TINY_CLIP,
        "source": {"kind": "auto", "root": str(root) if root else None, "timeout_s": 1,
                   "retries": 1},
    }
    p.update(pipeline)
    return load_settings(
        storage=f"embedded://{db}", pipelines=[p],
        connector={"checkpoint_interval_s": 0.2, "max_wait_ms": 5, "poll_interval_s": 0.02},
        embedded={"partitions": 8},
    )


def vec(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


def save(im: Image.Image, path: Path, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_every_source_kind_gets_the_models_vector(tmp_path: Path, clip: Encoder) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    pictures = [shapes.make_shape_image(s, c, seed=700 + i)
                for i, (c, s) in enumerate([("red", "square"), ("blue", "circle"),
                                            ("green", "star"), ("yellow", "triangle"),
                                            ("purple", "cross"), ("orange", "circle")])]
    raw = [save(im, root / f"p{i}.png") for i, im in enumerate(pictures)]
    with serve_http() as (base, routes, _):
        routes["/p2.png"] = (200, {"Content-Type": "image/png"}, raw[2])
        docs = {
            "path": {"caption": "a red square", "photo": "p0.png"},
            "file-uri": {"caption": "a blue circle", "photo": (root / "p1.png").as_uri()},
            "url": {"caption": "a green star", "photo": base + "/p2.png"},
            "base64": {"caption": "a yellow triangle",
                       "photo": base64.b64encode(raw[3]).decode()},
            "data-uri": {"caption": "a purple cross",
                         "photo": "data:image/png;base64," + base64.b64encode(raw[4]).decode()},
            "nested": {"caption": "an orange circle", "photo": f"{root}/p5.png"},
        }
        settings = photo_settings(tmp_path / "s.db", root)
        db = EmbeddedDatabase(settings.embedded_path, partitions=8)
        db.upsert_many(KS, docs.items())
        s = run_until_idle(settings).pipelines["photos"]
    assert s["embedded"] == 6 and s["failed"] == 0
    out = stored(db, "photos")
    want = clip.encode(pictures, normalize=True).vectors
    for key, w in zip(docs, want, strict=True):
        assert np.allclose(vec(out[key][1]), w, atol=1e-5), key
    # The caption is kept for the keyword leg.
    searcher = Searcher.from_settings(settings)
    try:
        assert [h.id for h in searcher.keyword("triangle", k=3)] == ["base64"]
    finally:
        searcher.close()
    db.close()


def test_binary_documents_are_the_image(tmp_path: Path, clip: Encoder) -> None:
    settings = photo_settings(tmp_path / "b.db", source_field=None, template=None,
                              source={"kind": "document"})
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    im = shapes.make_shape_image("star", "yellow", seed=5)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    db.upsert(KS, "star.jpg", buf.getvalue())
    db.upsert(KS, "json-doc", {"caption": "not an image"})
    db.upsert(KS, "junk.bin", b"\x00\x01 definitely not a picture")
    s = run_until_idle(settings).pipelines["photos"]
    assert s["embedded"] == 1 and s["failed"] == 2
    want = clip.encode([Image.open(io.BytesIO(buf.getvalue()))], normalize=True).vectors[0]
    assert np.allclose(vec(stored(db, "photos")["star.jpg"][1]), want, atol=1e-5)
    letters = {d.key: d for d in dead_letters(settings)}
    assert letters["json-doc"].kind == letters["junk.bin"].kind == "undecodable"
    assert "the document body" in letters["junk.bin"].reason
    # The same bytes again: skipped by hash; new bytes: embedded again.
    db.upsert(KS, "star.jpg", buf.getvalue())
    assert run_until_idle(settings).pipelines["photos"]["skipped_unchanged"] == 1
    db.close()


def test_bad_images_are_dead_letters_with_reasons_and_the_stream_goes_on(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    (tmp_path / "private.png").write_bytes(png())
    (root / "link-out.png").symlink_to(tmp_path / "private.png")
    (root / "garbage.png").write_bytes(b"this is not a picture")
    good = png(size=64)
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "huge.png").write_bytes(png(size=64) + b"\x00" * 30_000)
    bomb = io.BytesIO()
    Image.new("1", (5000, 5000)).save(bomb, "PNG")
    (root / "bomb.png").write_bytes(bomb.getvalue())
    for i in range(4):
        (root / f"ok{i}.png").write_bytes(png((40 * i, 90, 200)))
    with serve_http() as (base, routes, _):
        routes["/page.png"] = (200, {"Content-Type": "text/html"}, b"<html></html>")
        routes["/down.png"] = (503, {"Content-Length": "0"}, b"")
        docs: dict[str, Any] = {
            "outside": {"caption": "c", "photo": "../private.png"},
            "link-out": {"caption": "c", "photo": "link-out.png"},
            "missing-file": {"caption": "c", "photo": "nope.png"},
            "garbage": {"caption": "c", "photo": "garbage.png"},
            "truncated": {"caption": "c", "photo": "truncated.png"},
            "too-large": {"caption": "c", "photo": "huge.png"},
            "bomb": {"caption": "c", "photo": "bomb.png"},
            "http-404": {"caption": "c", "photo": base + "/gone.png"},
            "http-html": {"caption": "c", "photo": base + "/page.png"},
            "http-down": {"caption": "c", "photo": base + "/down.png"},
            "bad-base64": {"caption": "c", "photo": "data:image/png;base64,@@@@"},
            "no-field": {"caption": "c"},
            "number": {"caption": "c", "photo": 42},
            "no-caption": {"photo": "ok0.png"},
        }
        docs.update({f"ok{i}": {"caption": f"fine {i}", "photo": f"ok{i}.png"}
                     for i in range(4)})
        settings = photo_settings(
            tmp_path / "bad.db", root,
            source={"kind": "auto", "root": str(root), "max_bytes": 20_000,
                    "max_pixels": 4_000_000, "timeout_s": 1, "retries": 1},
        )
        db = EmbeddedDatabase(settings.embedded_path, partitions=8)
        db.upsert_many(KS, sorted(docs.items()))
        s = run_until_idle(settings).pipelines["photos"]
    assert set(stored(db, "photos")) == {"ok0", "ok1", "ok2", "ok3"}
    assert s["embedded"] == 4 and s["failed"] == len(docs) - 4
    kinds = {k: (d.kind, d.reason) for k, d in {d.key: d for d in dead_letters(settings)}.items()}
    assert {k: v[0] for k, v in kinds.items()} == {
        "outside": "outside_root", "link-out": "outside_root", "missing-file": "not_found",
        "garbage": "undecodable", "truncated": "undecodable", "too-large": "too_large",
        "bomb": "too_many_pixels", "http-404": "not_found", "http-html": "bad_content_type",
        "http-down": "unreachable", "bad-base64": "bad_base64", "no-field": "missing_field",
        "number": "wrong_type", "no-caption": "missing_field",
    }
    assert "'../private.png'" in kinds["outside"][1] and "outside" in kinds["outside"][1]
    assert "garbage.png" in kinds["garbage"][1]
    assert "/down.png" in kinds["http-down"][1] and "503" in kinds["http-down"][1]
    assert "5000x5000" in kinds["bomb"][1]
    # Fixing the file and touching the document embeds it and clears its dead letter.
    (root / "garbage.png").write_bytes(png((1, 200, 1)))
    db.upsert(KS, "garbage", {"caption": "c", "photo": "garbage.png", "fixed": True})
    run_until_idle(settings)
    assert "garbage" in stored(db, "photos")
    assert "garbage" not in {d.key for d in dead_letters(settings)}
    db.close()


def test_a_file_changed_in_place_is_embedded_again(tmp_path: Path, clip: Encoder) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    red = shapes.make_shape_image("square", "red", seed=1)
    blue = shapes.make_shape_image("circle", "blue", seed=2)
    save(red, root / "photo.png")
    settings = photo_settings(tmp_path / "c.db", root)
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    doc = {"caption": "my photo", "photo": "photo.png"}
    db.upsert(KS, "d", doc)
    run_until_idle(settings)
    first = stored(db, "photos")["d"]
    db.upsert(KS, "d", {**doc, "views": 1})  # the document changes, the file does not
    assert run_until_idle(settings).pipelines["photos"]["skipped_unchanged"] == 1
    save(blue, root / "photo.png")
    later = time.time() + 5
    os.utime(root / "photo.png", (later, later))
    db.upsert(KS, "d", {**doc, "views": 2})
    s = run_until_idle(settings).pipelines["photos"]
    assert s["embedded"] == 2
    after = stored(db, "photos")["d"]
    assert after[0] != first[0]
    want = clip.encode([blue], normalize=True).vectors[0]
    assert np.allclose(vec(after[1]), want, atol=1e-5)
    db.close()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, clip: Encoder) -> tuple[Settings, Path]:
    """60 held-out pictures (2 per class), embedded through the pipeline."""
    tmp = tmp_path_factory.mktemp("gallery")
    root = tmp / "pictures"
    root.mkdir()
    docs = {}
    for i, (im, caption, attrs) in enumerate(shapes.iter_dataset(60, HELDOUT_SEED)):
        save(im, root / f"{i:03d}.png")
        colour, shape = attrs.primary.label
        docs[f"img{i:03d}"] = {"caption": caption, "photo": f"{i:03d}.png",
                               "colour": colour, "shape": shape}
    settings = photo_settings(tmp / "gallery.db", root)
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    db.upsert_many(KS, docs.items())
    db.close()
    assert run_until_idle(settings).pipelines["photos"]["embedded"] == 60
    return settings, root


def test_text_finds_the_right_picture_first(gallery: tuple[Settings, Path]) -> None:
    settings, _ = gallery
    searcher = Searcher.from_settings(settings)
    try:
        right = 0
        for colour, shape in shapes.CLASSES:
            hits = searcher.vector(shapes.class_caption(colour, shape), k=2,
                                   fields=["colour", "shape"])
            right += (hits[0].fields["colour"], hits[0].fields["shape"]) == (colour, shape)
    finally:
        searcher.close()
    # Held-out captions x 60 held-out pictures (2 per class): measured 29/30 here (the tiny
    # CLIP README: R@1 1.000 over 300 pictures, 10 per class).
    assert right >= 28, f"text->image top-1 right for {right}/30 captions"


def test_an_image_finds_pictures_like_it(gallery: tuple[Settings, Path]) -> None:
    settings, root = gallery
    searcher = Searcher.from_settings(settings)
    try:
        # A stored picture, by path and as bytes: itself first.
        assert searcher.vector(root / "007.png", k=1)[0].id == "img007"
        assert searcher.vector((root / "007.png").read_bytes(), k=1)[0].id == "img007"
        # Pictures that are not stored (PIL images): the top hit has their class.
        right = 0
        queries = list(shapes.iter_dataset(30, HELDOUT_SEED + 1))
        for im, _, attrs in queries:
            top = searcher.vector(im, k=1, fields=["colour", "shape"])[0]
            right += (top.fields["colour"], top.fields["shape"]) == attrs.primary.label
        assert right >= 24, f"image->image top-1 right for {right}/30"  # measured 27/30
        # Hybrid: caption keywords + the image vector, fused. img007 is "a large green
        # triangle on a black background": vector #1, and a keyword hit for "black".
        hits = searcher.hybrid("black", image=root / "007.png", k=5, fields=["caption"])
        by_id = {h.id: h for h in hits}
        assert "img007" in [h.id for h in hits[:3]]
        assert by_id["img007"].ranks["vector"] == 1 and "keyword" in by_id["img007"].ranks
        assert all("black" in h.fields["caption"] for h in hits if "keyword" in h.ranks)
        with pytest.raises(SearchError, match="takes text"):
            searcher.search("keyword", root / "007.png")
    finally:
        searcher.close()


def test_cli_search_with_an_image(gallery: tuple[Settings, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings, root = gallery
    cfg = tmp_path / "cbembed.toml"
    p = settings.pipelines[0]
    cfg.write_text(
        f'storage = "{settings.storage}"\n[embedded]\npartitions = 8\n[[pipelines]]\n'
        f'name = "photos"\nkeyspace = "{KS}"\nsource_field = "photo"\ntemplate = "{{caption}}"\n'
        f'vector_field = "image_vec"\nsource = {{ kind = "auto", root = "{p.source.root}", '
        'timeout_s = 1, retries = 1 }\n'
        'encoder = { kind = "open-clip", model = "cbembed/tiny-clip" }\n'
    )
    image = str(root / "012.png")
    assert cbembed_main(["search", "--config", str(cfg), "--image", image, "-k", "3",
                         "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and hits[0]["id"] == "img012"  # image alone: vector search
    assert cbembed_main(["search", "--config", str(cfg), "--image", image, "small",
                         "--fields", "caption", "--json"]) == 0
    hybrid = json.loads(capsys.readouterr().out)["hits"]
    mine = {h["id"]: h for h in hybrid}["img012"]  # "a small blue triangle on ..."
    assert mine["ranks"]["vector"] == 1 and "keyword" in mine["ranks"]
    assert cbembed_main(["search", "--config", str(cfg), "--image", image,
                         "--mode", "keyword"]) == 2
    assert cbembed_main(["search", "--config", str(cfg), "--image",
                         str(tmp_path / "nope.png")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_text_and_image_pipelines_on_one_collection(tmp_path: Path, minilm: Encoder) -> None:
    root = tmp_path / "pictures"
    root.mkdir()
    save(shapes.make_shape_image("square", "red", seed=3), root / "a.png")
    save(shapes.make_shape_image("circle", "blue", seed=4), root / "b.png")
    settings = load_settings(
        storage=f"embedded://{tmp_path / 'multi.db'}",
        pipelines=[
            {"name": "text", "keyspace": KS, "template": "{title}. {body}",
             "vector_field": "text_vec"},
            {"name": "image", "keyspace": KS, "source_field": "photo", "template": "{title}",
             "vector_field": "image_vec", "encoder": TINY_CLIP,
             "source": {"kind": "path", "root": str(root)}},
        ],
        connector={"checkpoint_interval_s": 0.2, "max_wait_ms": 5, "poll_interval_s": 0.02},
        embedded={"partitions": 8},
    )
    db = EmbeddedDatabase(settings.embedded_path, partitions=8)
    db.upsert(KS, "a", {"title": "Red", "body": "a red square", "photo": "a.png"})
    db.upsert(KS, "b", {"title": "Blue", "body": "a blue circle", "photo": "b.png"})
    s = run_until_idle(settings).pipelines
    assert s["text"]["embedded"] == 2 and s["image"]["embedded"] == 2
    text0, image0 = stored(db, "text"), stored(db, "image")
    assert len(text0["a"][1]) == 384 * 4 and len(image0["a"][1]) == 64 * 4

    db.upsert(KS, "a", {"title": "Red", "body": "a bright red square", "photo": "a.png"})
    s = run_until_idle(settings).pipelines
    assert s["text"]["embedded"] == 3 and s["image"]["embedded"] == 2  # text only
    assert s["image"]["skipped_unchanged"] == 1
    assert stored(db, "text")["a"] != text0["a"] and stored(db, "image") == image0

    db.upsert(KS, "b", {"title": "Blue", "body": "a blue circle", "photo": "a.png"})
    s = run_until_idle(settings).pipelines
    assert s["text"]["embedded"] == 3 and s["image"]["embedded"] == 3  # image only
    assert stored(db, "text")["b"] == text0["b"]
    assert np.allclose(vec(stored(db, "image")["b"][1]), vec(image0["a"][1]), atol=1e-5)
    # Each pipeline searches its own space.
    searcher = Searcher.from_settings(settings)
    try:
        assert searcher.vector("bright red", pipeline="text", k=1)[0].id == "a"
        assert searcher.vector("a red square", pipeline="image", k=2)[0].id in ("a", "b")
        with pytest.raises(SearchError, match="takes no image"):
            searcher.vector(root / "a.png", pipeline="text")
    finally:
        searcher.close()
    db.close()


def test_open_clip_model_names(tmp_path: Path) -> None:
    from encoders.open_clip_image import TINY_CLIP_DIR, OpenClipEncoder, open_clip_name

    assert open_clip_name("cbembed/tiny-clip", None) == (f"local-dir:{TINY_CLIP_DIR}", None)
    assert open_clip_name(str(TINY_CLIP_DIR), None)[0] == f"local-dir:{TINY_CLIP_DIR}"
    assert open_clip_name("hf-hub:org/clip", None) == ("hf-hub:org/clip", None)
    assert open_clip_name("ViT-B-32", "laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert open_clip_name("ViT-B-32", "random") == ("ViT-B-32", None)
    with pytest.raises(EncoderError, match="needs options.pretrained"):
        open_clip_name("ViT-B-32", None)
    with pytest.raises(EncoderError, match="neither"):
        open_clip_name("no-such-architecture", "x")
    with pytest.raises(EncoderError, match="brings its own weights"):
        open_clip_name(str(TINY_CLIP_DIR), "openai")
    with pytest.raises(EncoderError, match="unknown option"):
        OpenClipEncoder("cbembed/tiny-clip", options={"pretrainde": "x"})
    # A copy of the folder loads as a plain local directory, the way users give their own.
    copy = tmp_path / "my-clip"
    copy.mkdir()
    for f in TINY_CLIP_DIR.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    enc = OpenClipEncoder(str(copy), device="cpu")
    assert (enc.dimension, enc.model_name, enc.query_modalities) == (
        64, str(copy), ("text", "image"))
    im = shapes.make_shape_image("cross", "purple", seed=9, size=150)
    v = enc.encode([im, np.asarray(im)], normalize=True).vectors
    assert v.shape == (2, 64) and np.allclose(v[0], v[1], atol=1e-6)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_demo_config_with_and_without_the_images_extra(tmp_path: Path) -> None:
    from connector.demo.config import demo_toml
    from connector.demo.gallery import images_dir, write_gallery

    db = tmp_path / "cbembed-demo.db"
    for photos, names in ((True, ["travel", "photos"]), (False, ["travel"])):
        f = tmp_path / f"demo-{photos}.toml"
        f.write_text(demo_toml(db, photos=photos))
        s = load_settings(f)
        assert [p.name for p in s.pipelines] == names
    assert s.pipelines[0].source is None
    photos_cfg = load_settings(tmp_path / "demo-True.toml").pipelines[1]
    assert photos_cfg.source is not None and photos_cfg.source.root == images_dir(db)
    docs = write_gallery(images_dir(db), n=3)
    mtimes = [(images_dir(db) / d["photo"]).stat().st_mtime_ns for _, d in docs]
    assert write_gallery(images_dir(db), n=3) == docs  # deterministic, files left alone
    assert [(images_dir(db) / d["photo"]).stat().st_mtime_ns for _, d in docs] == mtimes
