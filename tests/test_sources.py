"""Image/audio sources, unit by unit: paths under a root (symlinks, `..`, file:// URIs),
base64 and data: URIs, HTTP over a real loopback server (timeouts, sizes, content types,
retries, redirects), image and WAV decoding, and the source-config rules."""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from connector.config import PipelineConfig, SourceConfig, load_settings
from connector.errors import ConfigError, SourceError
from connector.sources import read_bytes, reference
from connector.sources.audio import decode_audio
from connector.sources.http import content_type_allowed, fetch
from connector.sources.images import decode_image
from tests.media import png, serve_http, wav

IMAGE_TYPES = ("image/*", "application/octet-stream")


def kind_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(SourceError) as e:
        fn(*args, **kw)
    return e.value.kind


# -- files ------------------------------------------------------------------------------------
@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, Any], dict[str, int]]]:
    with serve_http() as server:
        yield server


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "a.png").write_bytes(png())
    (r / "sub" / "b.png").write_bytes(png((0, 0, 200)))
    (tmp_path / "secret.png").write_bytes(png((1, 2, 3)))
    (r / "inside-link.png").symlink_to(r / "sub" / "b.png")
    (r / "escape.png").symlink_to(tmp_path / "secret.png")
    (r / "escape-dir").symlink_to(tmp_path, target_is_directory=True)
    return r


@pytest.mark.parametrize("value, expected", [
    ("a.png", "a.png"),
    ("sub/b.png", "sub/b.png"),
    ("./sub/../a.png", "a.png"),
    ("inside-link.png", "sub/b.png"),  # a link that stays inside is followed
])
def test_paths_under_the_root_are_read(root: Path, value: str, expected: str) -> None:
    cfg = SourceConfig(kind="path", root=root)
    ref = reference(value, cfg, "photo")
    assert ref.path == (root / expected).resolve()
    assert read_bytes(ref, cfg, IMAGE_TYPES) == (root / expected).read_bytes()


def test_absolute_paths_and_file_uris_under_the_root(root: Path) -> None:
    cfg = SourceConfig(kind="path", root=root)
    for value in (str(root / "a.png"), (root / "a.png").as_uri(),
                  "file://localhost" + str(root / "a.png")):
        assert reference(value, cfg, "photo").path == (root / "a.png").resolve()
    spaced = root / "with space.png"
    spaced.write_bytes(png())
    assert reference(spaced.as_uri(), cfg, "photo").path == spaced.resolve()


@pytest.mark.parametrize("value, kind", [
    ("../secret.png", "outside_root"),
    ("sub/../../secret.png", "outside_root"),
    ("escape.png", "outside_root"),  # a symlink out of the root
    ("escape-dir/secret.png", "outside_root"),  # a directory symlink out of the root
    ("/etc/passwd", "outside_root"),
    ("file:///etc/passwd", "outside_root"),
    ("file://otherhost/a.png", "unsupported"),
    ("nope.png", "not_found"),
    ("sub", "not_a_file"),
    ("a\x00.png", "unsupported"),
    ("ftp://example.com/a.png", "unsupported"),
])
def test_paths_that_are_refused(root: Path, value: str, kind: str) -> None:
    cfg = SourceConfig(kind="path", root=root)
    assert kind_of(reference, value, cfg, "photo") == kind


def test_refusal_says_what_and_why_without_reading(root: Path) -> None:
    cfg = SourceConfig(kind="path", root=root)
    with pytest.raises(SourceError) as e:
        reference("../secret.png", cfg, "photo")
    assert "'../secret.png'" in str(e.value) and "outside the source root" in str(e.value)
    # Outside the root, a missing file is refused the same way (existence is not revealed).
    assert kind_of(reference, "../does-not-exist.png", cfg, "photo") == "outside_root"


def test_no_root_means_no_paths(root: Path) -> None:
    assert kind_of(reference, "a.png", SourceConfig(), "photo") == "outside_root"


def test_what_is_read_is_what_was_checked(root: Path, tmp_path: Path) -> None:
    cfg = SourceConfig(kind="path", root=root)
    # A link retargeted outside after the check: the checked file is read, never the secret.
    link = root / "swap.png"
    link.symlink_to(root / "a.png")
    ref = reference("swap.png", cfg, "photo")
    link.unlink()
    link.symlink_to(tmp_path / "secret.png")
    assert read_bytes(ref, cfg, IMAGE_TYPES) == (root / "a.png").read_bytes()
    # A folder on the way swapped for a link out of the root: resolved again and refused.
    ref = reference("sub/b.png", cfg, "photo")
    (root / "sub").rename(root / "sub-old")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.png").write_bytes(png((5, 5, 5)))
    (root / "sub").symlink_to(outside, target_is_directory=True)
    assert kind_of(read_bytes, ref, cfg, IMAGE_TYPES) == "outside_root"
    # A file replaced inside the root (a new inode, as editors save): the new file is read.
    ref = reference("a.png", cfg, "photo")
    (root / "a.new").write_bytes(png((7, 7, 7)))
    (root / "a.new").replace(root / "a.png")
    assert read_bytes(ref, cfg, IMAGE_TYPES) == png((7, 7, 7))


def test_path_identity_follows_size_and_mtime(root: Path) -> None:
    cfg = SourceConfig(kind="path", root=root)
    first = reference("a.png", cfg, "photo").identity
    assert reference("a.png", cfg, "photo").identity == first
    (root / "a.png").write_bytes(png((9, 9, 9), size=20))
    os.utime(root / "a.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert reference("a.png", cfg, "photo").identity != first


def test_file_over_the_limit(root: Path) -> None:
    cfg = SourceConfig(kind="path", root=root, max_bytes=10)
    ref = reference("a.png", cfg, "photo")
    assert kind_of(read_bytes, ref, cfg, IMAGE_TYPES) == "too_large"


# -- base64 -----------------------------------------------------------------------------------
def test_base64_plain_urlsafe_and_data_uri() -> None:
    data = png()
    cfg = SourceConfig(kind="base64")
    plain = base64.b64encode(data).decode()
    wrapped = "\n".join(plain[i:i + 60] for i in range(0, len(plain), 60))
    for value in (plain, wrapped, base64.urlsafe_b64encode(data).decode().rstrip("="),
                  "data:image/png;base64," + plain):
        ref = reference(value, cfg, "photo")
        assert read_bytes(ref, cfg, IMAGE_TYPES) == data
    assert reference(plain, cfg, "p").identity == reference(wrapped, cfg, "p").identity


@pytest.mark.parametrize("value, kind", [
    ("not base64 at all!", "bad_base64"),
    ("QUJD" + "*" * 8, "bad_base64"),
    ("data:image/png,rawbytes", "bad_base64"),
    ("====", "bad_base64"),
])
def test_bad_base64(value: str, kind: str) -> None:
    assert kind_of(reference, value, SourceConfig(kind="base64"), "photo") == kind


def test_base64_limits_and_declared_type() -> None:
    big = base64.b64encode(b"x" * 1000).decode()
    assert kind_of(reference, big, SourceConfig(kind="base64", max_bytes=100), "p") == "too_large"
    cfg = SourceConfig(kind="base64")
    ref = reference("data:text/html;base64," + base64.b64encode(b"<p>").decode(), cfg, "p")
    assert kind_of(read_bytes, ref, cfg, IMAGE_TYPES) == "bad_content_type"


@pytest.mark.parametrize("value, kind", [
    ("https://example.com/a.png", "url"),
    ("HTTP://example.com/a.png", "url"),
    ("file:///x/a.png", "path"),
    ("photos/a.png", "path"),
    ("C:/photos/a.png", "path"),
    ("data:image/png;base64,AAAA", "inline"),
    (base64.b64encode(b"\x89PNG" + bytes(100)).decode(), "inline"),
])
def test_auto_classifies_each_value(root: Path, value: str, kind: str) -> None:
    cfg = SourceConfig(kind="auto", root=root)
    try:
        ref = reference(value, cfg, "photo")
    except SourceError as e:  # a path that is not there: classified as a path all the same
        assert kind == "path" and e.kind in ("not_found", "outside_root")
        return
    assert ref.kind == kind


def test_auto_refuses_other_schemes() -> None:
    assert kind_of(reference, "s3://bucket/a.png", SourceConfig(), "photo") == "unsupported"
    assert kind_of(reference, "/x.png", SourceConfig(kind="url"), "photo") == "unsupported"


# -- HTTP over loopback -------------------------------------------------------------------------
def _get(url: str, **kw: Any) -> bytes:
    opts = {"timeout_s": 2.0, "max_bytes": 10_000, "retries": 2, "allowed": IMAGE_TYPES,
            "sleep": lambda s: None}
    opts.update(kw)
    return fetch(url, **opts)


def test_http_image_is_fetched(http_server: Any) -> None:
    base, routes, _ = http_server
    data = png()
    routes["/a.png"] = (200, {"Content-Type": "image/png", "Content-Length": str(len(data))},
                        data)
    routes["/moved"] = (302, {"Location": "/a.png", "Content-Length": "0"}, b"")
    assert _get(base + "/a.png") == data
    assert _get(base + "/moved") == data  # redirects are followed


def test_http_failures_have_their_kinds(http_server: Any) -> None:
    base, routes, hits = http_server
    routes["/page"] = (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>")
    routes["/huge"] = (200, {"Content-Type": "image/png", "Content-Length": "999999"}, b"x")

    def endless(w: Any) -> None:  # no Content-Length: the limit is found while reading
        for _ in range(100):
            w.write(b"x" * 1000)
    routes["/stream"] = (200, {"Content-Type": "image/png", "Connection": "close"}, endless)
    routes["/forbidden"] = (403, {"Content-Length": "0"}, b"")
    routes["/to-file"] = (302, {"Location": "file:///etc/passwd", "Content-Length": "0"}, b"")
    routes["/down"] = (503, {"Content-Length": "0"}, b"")
    assert kind_of(_get, base + "/page") == "bad_content_type"
    assert kind_of(_get, base + "/huge") == "too_large"
    assert kind_of(_get, base + "/stream") == "too_large"
    assert kind_of(_get, base + "/missing.png") == "not_found"
    assert kind_of(_get, base + "/forbidden") == "http_status"
    assert kind_of(_get, base + "/to-file") == "unsupported"
    with pytest.raises(SourceError) as e:
        _get(base + "/down", retries=2)
    assert e.value.kind == "unreachable" and "503" in str(e.value) and base in str(e.value)
    assert hits["/down"] == 3 and hits["/missing.png"] == 1  # 5xx retried, 404 not


def test_http_retry_then_success(http_server: Any) -> None:
    base, routes, hits = http_server
    data = png()
    routes["/flaky.png"] = lambda n: ((503, {"Content-Length": "0"}, b"") if n < 3 else
                                      (200, {"Content-Type": "image/png"}, data))
    assert _get(base + "/flaky.png", retries=2) == data and hits["/flaky.png"] == 3


def test_http_timeout_and_closed_port(http_server: Any) -> None:
    base, routes, hits = http_server

    def slow(w: Any) -> None:
        time.sleep(1.0)
        w.write(b"late")
    routes["/slow.png"] = (200, {"Content-Type": "image/png"}, slow)
    started = time.monotonic()
    assert kind_of(_get, base + "/slow.png", timeout_s=0.2, retries=1) == "unreachable"
    assert time.monotonic() - started < 3 and hits["/slow.png"] == 2
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert kind_of(_get, f"http://127.0.0.1:{port}/a.png", retries=0) == "unreachable"


@pytest.mark.parametrize("ctype, ok", [
    ("image/png", True), ("IMAGE/JPEG; q=1", True), ("application/octet-stream", True),
    ("text/html", False), ("image", False),
])
def test_content_type_patterns(ctype: str, ok: bool) -> None:
    assert content_type_allowed(ctype, IMAGE_TYPES) is ok


# -- decoding ---------------------------------------------------------------------------------
def test_images_decode_to_rgb_and_transparency_goes_white() -> None:
    im = decode_image(png((10, 20, 30)), where="x")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (10, 20, 30)
    clear = decode_image(png((10, 20, 30), mode="RGBA"), where="x")
    assert clear.mode == "RGB" and clear.getpixel((0, 0)) == (255, 255, 255)
    gray = io.BytesIO()
    Image.new("L", (8, 8), 77).save(gray, "JPEG")
    assert decode_image(gray.getvalue(), where="x").getpixel((0, 0))[0] in range(70, 85)


@pytest.mark.parametrize("data, kind", [
    (b"", "undecodable"),
    (b"GIF89a not really", "undecodable"),
    (b"plain text", "undecodable"),
    (png(size=64)[:60], "undecodable"),  # truncated
])
def test_bad_images(data: bytes, kind: str) -> None:
    assert kind_of(decode_image, data, where="photo.png") == kind


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, "PNG")  # 16 Mpx in a few kB
    data = buf.getvalue()
    assert len(data) < 10_000
    with pytest.raises(SourceError) as e:
        decode_image(data, where="bomb.png", max_pixels=1_000_000)
    assert e.value.kind == "too_many_pixels" and "4000x4000" in str(e.value)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_decodes_at_every_width(width: int) -> None:
    t = np.arange(1600) / 16000
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    got = decode_audio(wav(x, 16000, width), where="a.wav", target_rate=16000)
    assert got.dtype == np.float32 and got.shape == (1600,)
    assert np.abs(got - x).max() < (0.02 if width == 1 else 1e-3)


def test_stereo_is_averaged_and_rates_are_converted() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    left, right = 0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    got = decode_audio(wav(stereo, rate, channels=2), where="s.wav", target_rate=16000)
    assert got.shape == (16000,)
    want = 0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    assert np.abs(got[200:-200] - want[200:-200]).max() < 0.01


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00", b"not audio at all", png()])
def test_bad_audio(data: bytes) -> None:
    assert kind_of(decode_audio, data, where="clip", target_rate=16000) == "undecodable"


# -- configuration ----------------------------------------------------------------------------
def _pipeline(**over: Any) -> dict[str, Any]:
    p = {"name": "photos", "keyspace": "a.b.c", "source_field": "photo",
         "encoder": {"kind": "open-clip", "model": "cbembed/tiny-clip"}}
    p.update(over)
    return p


@pytest.mark.parametrize("over, message", [
    ({"source": {"kind": "path"}}, "needs a `root`"),
    ({"source": {"kind": "document"}}, "takes no `source_field`"),
    ({"source_field": None, "template": "{t}", "source": {"kind": "document"}},
     "takes no `source_field`, `template`"),
    ({"source_field": None, "template": "{t}", "source": {"kind": "url"}}, "set `source_field`"),
    ({"source": {"kind": "ftp"}}, "source.kind"),
    ({"source": {"max_bytes": 0}}, "source.max_bytes"),
])
def test_source_config_rules(over: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(pipelines=[_pipeline(**over)])
    assert message in str(e.value)


def test_binary_document_pipeline_and_relative_root(tmp_path: Path) -> None:
    p = PipelineConfig(**_pipeline(source_field=None, source={"kind": "document"}))
    assert p.source is not None and p.source.kind == "document"
    with pytest.raises(ConfigError, match="binary document cannot hold its vector"):
        load_settings(storage="couchbase://localhost",
                      pipelines=[_pipeline(source_field=None, source={"kind": "document"})])
    f = tmp_path / "cbembed.toml"
    f.write_text('[[pipelines]]\nname = "photos"\nkeyspace = "a.b.c"\nsource_field = "photo"\n'
                 'source = { kind = "path", root = "pictures" }\n'
                 'encoder = { kind = "open-clip", model = "cbembed/tiny-clip" }\n')
    s = load_settings(f)
    assert s.pipelines[0].source.root == (tmp_path / "pictures").resolve()


def test_a_cut_off_wav_still_decodes() -> None:
    data = wav(np.zeros(1000), 16000)
    got = decode_audio(data[:-1], where="cut.wav", target_rate=16000)  # half a sample lost
    assert got.shape == (999,)


def test_an_unexpected_loader_failure_is_a_dead_letter_not_a_crash(
    root: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.inputs import ImageLoader
    from connector.sources import images

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug somewhere below")

    cfg = SourceConfig(kind="path", root=root)
    monkeypatch.setattr(images, "decode_image", boom)
    with pytest.raises(SourceError) as e:
        ImageLoader(cfg, IMAGE_TYPES)(reference("a.png", cfg, "photo"))
    assert e.value.kind == "load_failed" and "a bug somewhere below" in str(e.value)
