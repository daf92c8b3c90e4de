"""Images through the whole embedded pipeline vs plain `encoder.encode`, one run.

    python bench/bench_images.py [--images 1000] [--batch 32] [--size 64]
                                 [--model cbembed/tiny-clip] [--pretrained TAG|random]

The same N generated pictures (connector/demo/shapes.py), written as PNG files:

1. plain: `encoder.encode(images)` on already decoded PIL images, batch by batch, on a worker
   thread (the pipeline encodes on one too);
2. plain + loading: read each file and decode it (what the pipeline's loader does), then encode;
3. pipeline: documents naming the files go through feed -> extract (resolve under the root,
   stat, hash) -> batch -> encode thread (read, decode, encode) -> CAS write-back ->
   checkpoints, on the embedded store.

Prints the three rates and the ratios pipeline/plain and pipeline/(plain + loading).
The tiny CLIP is so small that file reading and PNG decoding weigh as much as the model; pass
`--model ViT-B-32 --pretrained random` for a real-size model's compute (untrained weights).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from connector.config import load_settings
from connector.demo import shapes
from connector.embedded import EmbeddedDatabase
from connector.service import run_until_idle
from connector.sources.images import decode_image
from encoders.registry import load_encoder

KS = "bench.gallery.photos"


def settings_for(db: Path, root: Path, batch: int, model: str, pretrained: str | None) -> Any:
    options = {"pretrained": pretrained} if pretrained else {}
    return load_settings(
        storage=f"embedded://{db}",
        pipelines=[{
            "name": "photos", "keyspace": KS, "source_field": "photo", "template": "{caption}",
            "vector_field": "image_vec", "source": {"kind": "path", "root": str(root)},
            "encoder": {"kind": "open-clip", "model": model, "options": options},
        }],
        connector={"max_batch": batch, "max_wait_ms": 20, "poll_interval_s": 0.05},
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64, help="picture side in pixels")
    ap.add_argument("--model", default="cbembed/tiny-clip")
    ap.add_argument("--pretrained", default=None)
    args = ap.parse_args()
    n, batch = args.images, args.batch
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pictures"
        root.mkdir()
        docs = []
        for i, (im, caption, _) in enumerate(shapes.iter_dataset(n, 5, size=args.size)):
            im.save(root / f"{i:05d}.png")
            docs.append((f"p{i}", {"caption": caption, "photo": f"{i:05d}.png"}))
        settings = settings_for(Path(tmp) / "bench.db", root, batch, args.model,
                                args.pretrained)
        enc = load_encoder(settings.pipelines[0].encoder)
        files = [root / f"{i:05d}.png" for i in range(n)]
        decoded = [decode_image(f.read_bytes(), where=f.name) for f in files]
        import torch

        print(f"images={n} ({args.size}x{args.size} PNG) batch={batch} model={enc.model_name} "
              f"dims={enc.dimension} device={enc.device} torch_threads={torch.get_num_threads()}")
        worker = ThreadPoolExecutor(1)
        worker.submit(enc.encode, decoded[:batch], normalize=True).result()  # warm-up

        def plain() -> float:
            t = time.perf_counter()
            for i in range(0, n, batch):
                enc.encode(decoded[i:i + batch], normalize=True)
            return n / (time.perf_counter() - t)

        def plain_loading() -> float:
            t = time.perf_counter()
            for i in range(0, n, batch):
                ims = [decode_image(f.read_bytes(), where=f.name) for f in files[i:i + batch]]
                enc.encode(ims, normalize=True)
            return n / (time.perf_counter() - t)

        plain_rate = worker.submit(plain).result()
        loading_rate = worker.submit(plain_loading).result()
        db = EmbeddedDatabase(settings.embedded_path)
        db.upsert_many(KS, docs)
        db.close()
        t = time.perf_counter()
        summary = run_until_idle(settings)
        pipe_rate = n / (time.perf_counter() - t)
        assert summary.pipelines["photos"]["embedded"] == n, summary.pipelines
        print(f"plain encoder.encode (decoded images)   {plain_rate:8.1f} images/s")
        print(f"plain read + decode + encode            {loading_rate:8.1f} images/s")
        print(f"embedded pipeline (files -> vectors)    {pipe_rate:8.1f} images/s")
        print(f"ratio pipeline / plain encode           {pipe_rate / plain_rate:8.3f}")
        print(f"ratio pipeline / plain with loading     {pipe_rate / loading_rate:8.3f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
