#!/usr/bin/env python
"""Train the tiny CLIP test/demo model on synthetic coloured shapes.

No pretrained CLIP can be downloaded where cbembed is developed, so the project makes
its own: a ~3.6 M parameter open_clip model (small ResNet image tower, 2-layer text tower, the
standard open_clip BPE tokenizer) trained contrastively on pictures from
``connector.demo.shapes``. It learns to tell "a red square" from "a blue circle",
which is all the tests and the offline demo need. It knows nothing about real photos.

Output (``--out``, default ``encoders/assets/tiny_clip``)::

    open_clip_config.json         model_cfg + preprocess_cfg, read by open_clip
    open_clip_model.safetensors   weights in fp16
    README.md                     how it was made, measured figures

Load it with::

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:/abs/dir")
    tokenizer = open_clip.get_tokenizer("local-dir:/abs/dir")

Re-train (about 3 minutes on 2 CPU cores; same output bytes for the same arguments,
torch build and thread count)::

    python tools/train_tiny_clip.py

The run is deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``,
a fixed number of steps (not a time budget) and a fixed thread count (``--threads``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.transform import PreprocessCfg, image_transform_v2  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from connector.demo import shapes  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "encoders" / "assets" / "tiny_clip"

# Seed bases for connector.demo.shapes.iter_dataset: training and held-out sets never
# share a scene seed (iter_dataset uses seed * 1_000_000 + i).
TRAIN_SEED = 0
HELDOUT_SEED = 1
HELDOUT_BIG_SEED = 2

MODEL_CFG: dict = {
    "embed_dim": 64,
    # open_clip's ModifiedResNet (the "RN50" family) scaled down: width 8 gives
    # 4-8-8 stem channels, stages of 32/64/128/256 channels, 2x2 attention pooling.
    # A convolutional tower learns shapes far faster than a tiny ViT on few CPU steps.
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 8,
        "head_width": 32,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,  # the standard open_clip SimpleTokenizer vocabulary
        "width": 64,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 2.0,
    },
}

PREPROCESS_CFG: dict = {
    "size": 64,
    "mode": "RGB",
    "mean": list(open_clip.OPENAI_DATASET_MEAN),
    "std": list(open_clip.OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}

# Other sizes some training pictures are drawn at, then resized by the model's own
# preprocess transform, so that pictures of any size embed sensibly.
ALT_SIZES = (40, 48, 80, 96, 128, 160, 224)

# Prompt forms each caption is trained with: (prefix, drop the leading article).
# "a red square", "a photo of a red square", ..., "red square".
PROMPT_FORMS: tuple[tuple[str, bool], ...] = (
    ("", False), ("", False), ("", False),
    ("a photo of ", False), ("an image of ", False), ("a picture of ", False),
    ("", True),
)


def prompt_text(text: str, form: tuple[str, bool]) -> str:
    prefix, bare = form
    if bare:
        text = text.split(" ", 1)[1]  # captions always start with "a" / "an"
    return prefix + text


@dataclass
class Args:
    out: Path
    steps: int
    batch: int
    lr: float
    train_images: int
    second_object_prob: float
    alt_size_prob: float
    threads: int
    seed: int
    heldout: int


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    p.add_argument("--steps", type=int, default=700, help="optimizer steps")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-images", type=int, default=10000)
    p.add_argument("--second-object-prob", type=float, default=0.15)
    p.add_argument("--alt-size-prob", type=float, default=0.15)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="init / sampling seed")
    p.add_argument("--heldout", type=int, default=300, help="held-out images for evaluation")
    ns = p.parse_args(argv)
    return Args(**{k.replace("-", "_"): v for k, v in vars(ns).items()})


def set_determinism(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    # Filling every new tensor with NaN (a debugging aid that deterministic mode turns
    # on) triples the step time on CPU and has no effect on the results.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- data


@dataclass
class CaptionInfo:
    """A caption and what it claims, to decide which pictures it is true for."""

    text: str
    class_key: int  # id of the set of (colour, shape) labels
    size_key: int  # id of the (label, size) tuple, or -1 when no size word is used
    bg_key: int  # background id, or -1 when no background is named


class Interner:
    def __init__(self) -> None:
        self.ids: dict[object, int] = {}

    def __call__(self, key: object) -> int:
        return self.ids.setdefault(key, len(self.ids))


def caption_infos(attrs: shapes.SceneAttributes, keys: dict[str, Interner]) -> list[CaptionInfo]:
    """All true captions of a scene we train on, with their claims."""
    objs = list(attrs.objects)
    orders = [objs] if len(objs) == 1 else [objs, objs[::-1]]
    class_key = keys["class"](frozenset(o.label for o in objs))
    size_key = keys["size"](frozenset((o.label, o.size_word) for o in objs))
    bg_key = keys["bg"](attrs.background)
    out: list[CaptionInfo] = []
    for order in orders:
        scene = shapes.SceneAttributes(attrs.seed, attrs.image_size, attrs.background,
                                       attrs.background_level, tuple(order))
        for with_size in (False, True):
            for with_bg in (False, True):
                text = shapes.caption_for(scene, with_size=with_size, with_background=with_bg)
                has_size = text != shapes.caption_for(scene, with_size=False,
                                                      with_background=with_bg)
                if with_size and not has_size:
                    continue  # same text as the size-less variant
                out.append(CaptionInfo(text, class_key, size_key if has_size else -1,
                                       bg_key if with_bg else -1))
    return out


@dataclass
class TrainSet:
    images: torch.Tensor  # uint8 (N, 3, H, W), already resized by the preprocess transform
    class_key: torch.Tensor  # (N,)
    size_key: torch.Tensor  # (N,)
    bg_key: torch.Tensor  # (N,)
    caption_offsets: list[list[int]]  # per image: indices into the caption table
    cap_tokens: torch.Tensor  # (C, context_length)
    cap_class: torch.Tensor  # (C,)
    cap_size: torch.Tensor  # (C,)
    cap_bg: torch.Tensor  # (C,)


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)


def build_train_set(args: Args, tokenizer: open_clip.SimpleTokenizer) -> TrainSet:
    resize = image_transform_v2(PreprocessCfg(**PREPROCESS_CFG), is_train=False).transforms[:2]
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 17]))
    keys = {"class": Interner(), "size": Interner(), "bg": Interner()}
    cap_index: dict[tuple[str, int, int, int], int] = {}
    cap_list: list[CaptionInfo] = []
    images = torch.empty((args.train_images, 3, 64, 64), dtype=torch.uint8)
    ck, sk, bk = [], [], []
    offsets: list[list[int]] = []
    for i in range(args.train_images):
        size = 64
        if rng.random() < args.alt_size_prob:
            size = int(ALT_SIZES[int(rng.integers(len(ALT_SIZES)))])
        second = bool(rng.random() < args.second_object_prob)
        img, attrs = shapes.make_scene(TRAIN_SEED * 1_000_000 + i, size=size, second_object=second)
        if size != 64:
            for t in resize:
                img = t(img)
        images[i] = pil_to_uint8(img)
        infos = caption_infos(attrs, keys)
        ck.append(infos[0].class_key)
        sk.append(keys["size"](frozenset((o.label, o.size_word) for o in attrs.objects)))
        bk.append(keys["bg"](attrs.background))
        ids = []
        for info in infos:
            k = (info.text, info.class_key, info.size_key, info.bg_key)
            if k not in cap_index:
                cap_index[k] = len(cap_list)
                cap_list.append(info)
            ids.append(cap_index[k])
        offsets.append(ids)
    # Prompt forms multiply the caption table; keep them as separate entries.
    texts, cls, siz, bgs = [], [], [], []
    for info in cap_list:
        for form in PROMPT_FORMS:
            texts.append(prompt_text(info.text, form))
            cls.append(info.class_key)
            siz.append(info.size_key)
            bgs.append(info.bg_key)
    n_pref = len(PROMPT_FORMS)
    offsets = [[c * n_pref + j for c in ids for j in range(n_pref)] for ids in offsets]
    tokens = tokenize_spliced(tokenizer, [info.text for info in cap_list])
    check = [0, len(texts) // 2, len(texts) - 1, *range(len(PROMPT_FORMS))]
    assert torch.equal(tokens[check], tokenizer([texts[i] for i in check])), "token splice"
    return TrainSet(
        images=images,
        class_key=torch.tensor(ck),
        size_key=torch.tensor(sk),
        bg_key=torch.tensor(bk),
        caption_offsets=offsets,
        cap_tokens=tokens,
        cap_class=torch.tensor(cls),
        cap_size=torch.tensor(siz),
        cap_bg=torch.tensor(bgs),
    )


def tokenize_spliced(tokenizer: open_clip.SimpleTokenizer, texts: list[str]) -> torch.Tensor:
    """Tokens of every text in every form of PROMPT_FORMS.

    Same result as ``tokenizer(prompt_text(text, form))`` (the BPE works word by word),
    but each text is encoded once; row ``i * len(PROMPT_FORMS) + j`` is text i in form j.
    """
    ctx = MODEL_CFG["text_cfg"]["context_length"]
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    forms = [(tokenizer.encode(prefix), bare) for prefix, bare in PROMPT_FORMS]
    out = torch.zeros((len(texts) * len(forms), ctx), dtype=torch.long)
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text)
        for j, (pre, bare) in enumerate(forms):
            row = [sot, *pre, *(ids[1:] if bare else ids), eot]
            if len(row) > ctx:
                raise ValueError(f"caption too long for context {ctx}: {text!r}")
            out[i * len(forms) + j, : len(row)] = torch.tensor(row)
    return out


def normalize(images_u8: torch.Tensor) -> torch.Tensor:
    """Same as ToTensor + Normalize of the preprocess transform."""
    mean = torch.tensor(PREPROCESS_CFG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"]).view(1, 3, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


# --------------------------------------------------------------------------- train


def build_model(seed: int) -> open_clip.CLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(**MODEL_CFG)
    return model


def lr_at(step: int, total: int, base: float) -> float:
    warmup = max(1, total // 20)
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: open_clip.CLIP, data: TrainSet, args: Args) -> dict:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        is_gain = p.ndim < 2 or "embedding" in name or "ln" in name or "logit_scale" in name
        (no_decay if is_gain else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 23]))
    n = data.images.shape[0]
    order = rng.permutation(n)
    pos = 0
    model.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    step_ends: list[float] = [0.0]
    for step in range(args.steps):
        if pos + args.batch > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + args.batch]
        pos += args.batch
        cap = np.array([data.caption_offsets[i][int(rng.integers(len(data.caption_offsets[i])))]
                        for i in idx])
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        imgs = data.images[torch.from_numpy(idx)]
        imgs = torch.where(flip.view(-1, 1, 1, 1), imgs.flip(-1), imgs)
        x = normalize(imgs)
        tokens = data.cap_tokens[torch.from_numpy(cap)]

        # truth[i, j]: caption j is true for image i (the diagonal always is).
        ti = torch.from_numpy(idx)
        tc = torch.from_numpy(cap)
        truth = data.class_key[ti][:, None] == data.cap_class[tc][None, :]
        c_size = data.cap_size[tc][None, :]
        truth &= (c_size < 0) | (data.size_key[ti][:, None] == c_size)
        c_bg = data.cap_bg[tc][None, :]
        truth &= (c_bg < 0) | (data.bg_key[ti][:, None] == c_bg)
        target = truth.float()

        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        img_f = model.encode_image(x, normalize=True)
        txt_f = model.encode_text(tokens, normalize=True)
        logits = model.logit_scale.exp() * img_f @ txt_f.T
        loss_i2t = F.cross_entropy(logits, target / target.sum(1, keepdim=True))
        loss_t2i = F.cross_entropy(logits.T, (target / target.sum(0, keepdim=True)).T)
        loss = 0.5 * (loss_i2t + loss_t2i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        step_ends.append(time.perf_counter() - t0)
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {np.mean(losses[-100:]):.4f}  "
                  f"scale {float(model.logit_scale.detach().exp()):.1f}  "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    # The cores are often shared: the fastest 100-step stretch shows the unloaded speed.
    ends = np.array(step_ends)
    window = min(100, len(ends) - 1)
    fastest = float(np.min(ends[window:] - ends[:-window]) / window) if window > 0 else 0.0
    return {"train_seconds": time.perf_counter() - t0,
            "final_loss": float(np.mean(losses[-100:])),
            "fastest_step_seconds": fastest}


# ------------------------------------------------------------------------ evaluate


@torch.no_grad()
def evaluate(model: Any, preprocess: Any, tokenizer: Any, n: int, seed: int,
             image_size: int = 64) -> dict:
    """Class-caption retrieval on held-out single-object pictures.

    * image->text: each picture against the 30 captions "a {colour} {shape}" (or "an");
      top-1 / top-5 accuracy, and colour-only / shape-only accuracy of the top caption.
    * text->image: each of the 30 class captions ranks the ``n`` pictures; R@1 = share
      of captions whose top picture has that class, R@5 = share with one in the top 5,
      P@5 = mean share of the top 5 that have the class.
    """
    model.eval()
    items = list(shapes.iter_dataset(n, seed, size=image_size))
    x = torch.stack([preprocess(img) for img, _, _ in items])
    labels = torch.tensor([shapes.CLASSES.index(a.primary.label) for _, _, a in items])
    img_f = F.normalize(model.encode_image(x).float(), dim=-1)
    txt_f = F.normalize(model.encode_text(tokenizer(shapes.class_captions())).float(), dim=-1)
    sims = img_f @ txt_f.T  # (n, 30)
    top5 = sims.topk(5, dim=1).indices
    pred = top5[:, 0]
    colours = torch.tensor([shapes.COLOURS.index(c) for c, _ in shapes.CLASSES])
    shape_ids = torch.tensor([shapes.SHAPES.index(s) for _, s in shapes.CLASSES])
    ranks = sims.T.argsort(dim=1, descending=True)  # (30, n)
    rel = labels[ranks] == torch.arange(len(shapes.CLASSES))[:, None]
    return {
        "n_images": n,
        "image_size": image_size,
        "i2t_top1": float((pred == labels).float().mean()),
        "i2t_top5": float((top5 == labels[:, None]).any(1).float().mean()),
        "i2t_colour": float((colours[pred] == colours[labels]).float().mean()),
        "i2t_shape": float((shape_ids[pred] == shape_ids[labels]).float().mean()),
        "t2i_r1": float(rel[:, 0].float().mean()),
        "t2i_r5": float(rel[:, :5].any(1).float().mean()),
        "t2i_p5": float(rel[:, :5].float().mean()),
    }


def fmt(m: dict) -> str:
    return (f"image->text top1 {m['i2t_top1']:.3f} top5 {m['i2t_top5']:.3f} "
            f"(colour {m['i2t_colour']:.3f}, shape {m['i2t_shape']:.3f}) | "
            f"text->image R@1 {m['t2i_r1']:.3f} R@5 {m['t2i_r5']:.3f} P@5 {m['t2i_p5']:.3f}")


# -------------------------------------------------------------------------- output


def config_json() -> dict:
    return {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}


def save_asset(model: open_clip.CLIP, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(config_json(), indent=2) + "\n")
    sd = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
          for k, v in model.state_dict().items()}
    path = out / "open_clip_model.safetensors"
    save_file(sd, str(path), metadata={"format": "pt", "producer": "tools/train_tiny_clip.py"})
    path.chmod(0o644)
    return path


def table_row(m: dict, seed: int) -> str:
    cells = [f"{m['n_images']} pictures, {m['image_size']} px (seed {seed})"]
    cells += [f"{m[k]:.3f}" for k in ("i2t_top1", "i2t_top5", "i2t_colour", "i2t_shape",
                                      "t2i_r1", "t2i_r5", "t2i_p5")]
    return "| " + " | ".join(cells) + " |"


def describe_architecture() -> str:
    vc, tc = MODEL_CFG["vision_cfg"], MODEL_CFG["text_cfg"]
    w = vc["width"]
    lines = [
        f"- image: open_clip ModifiedResNet, {vc['image_size']}x{vc['image_size']} input, "
        f"blocks {vc['layers']}, width {w} (stem {w // 2}-{w // 2}-{w} channels, stages "
        f"{4 * w}/{8 * w}/{16 * w}/{32 * w}), attention pooling with "
        f"{32 * w // vc['head_width']} heads",
        f"- text: transformer, width {tc['width']}, {tc['layers']} layers, {tc['heads']} heads, "
        f"MLP ratio {tc['mlp_ratio']:g}, context length {tc['context_length']}, "
        f"vocab {tc['vocab_size']}",
        f"- joint embedding: {MODEL_CFG['embed_dim']} dimensions "
        "(L2-normalise before cosine similarity)",
    ]
    return "\n".join(lines)


def write_readme(out: Path, args: Args, info: dict, m64: dict, mbig: dict, weights: Path,
                 n_params: int) -> None:
    size = weights.stat().st_size
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    cmd = "python tools/train_tiny_clip.py"
    defaults = parse_args([])
    extra = [f"--{k.replace('_', '-')} {v}" for k, v in asdict(args).items()
             if k != "out" and v != getattr(defaults, k)]
    if extra:
        cmd += " " + " ".join(extra)
    seed_lo, seed_hi = TRAIN_SEED * 1_000_000, TRAIN_SEED * 1_000_000 + args.train_images - 1
    table = "\n".join([
        "| held-out set | image->text top-1 | top-5 | colour right | shape right "
        "| text->image R@1 | R@5 | P@5 |",
        "|---|---|---|---|---|---|---|---|",
        table_row(m64, HELDOUT_SEED),
        table_row(mbig, HELDOUT_BIG_SEED),
    ])
    dim = MODEL_CFG["embed_dim"]
    text = f"""# tiny_clip: a tiny open_clip model for tests and the offline demo

A {n_params / 1e6:.2f} M parameter CLIP made by `tools/train_tiny_clip.py`, trained from
scratch on synthetic pictures of coloured shapes from `connector/demo/shapes.py`
(6 colours x 5 shapes, 3 sizes, 5 grey backgrounds, {args.second_object_prob:.0%} of
scenes with a second object, {args.alt_size_prob:.0%} drawn at other sizes and resized).
It separates "a red square" from "a blue circle"; it knows nothing about real photos
and is **not** a general-purpose CLIP. Use it only for tests and the offline demo.

## Load (offline)

```python
import open_clip
d = "/abs/path/to/encoders/assets/tiny_clip"
model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{{d}}")
tokenizer = open_clip.get_tokenizer(f"local-dir:{{d}}")   # SimpleTokenizer, context 32
model.eval()
img = model.encode_image(preprocess(pil_image).unsqueeze(0))    # (1, {dim})
txt = model.encode_text(tokenizer(["a red square"]))             # (1, {dim})
```

No network is used: the config names no HF tokenizer, so open_clip uses its bundled
BPE vocabulary (`SimpleTokenizer`, 49408 tokens). Weights are fp16 and load into the
default fp32 model. The preprocess transform (resize shortest side to 64, bicubic,
centre crop, OpenAI mean/std) takes PIL images of any size and mode. Call
`model.eval()` before embedding (the image tower has BatchNorm layers).

## Architecture

{describe_architecture()}

Most of the {size / 1e6:.1f} MB file is the 49408 x 64 token-embedding table of the
standard vocabulary (kept so the standard tokenizer works unchanged).

## Training

Contrastive (CLIP) loss with soft targets: a caption counts as a positive for every
picture in the batch it is true of (same classes, and same size/background when the
caption names them), since the 30 classes repeat within a batch. Captions are drawn
from the true variants of each scene ("a red square", "a small red square on a white
background", ... also as "a photo of ..." or without the leading article); random
horizontal flips.
{args.train_images} pre-rendered training pictures (scene seeds {seed_lo}..{seed_hi}),
{args.steps} AdamW steps of batch {args.batch}, lr {args.lr} with warm-up and cosine
decay, {args.threads} CPU threads, `torch.use_deterministic_algorithms(True)`,
seed {args.seed}.

- training time: {info['train_seconds']:.0f} s ({info['total_seconds']:.0f} s in all) on
  {info['machine']}, torch {torch.__version__}, open_clip {open_clip.__version__};
  fastest 100-step stretch {info['fastest_step_seconds']:.2f} s/step, i.e. about
  {info['fastest_step_seconds'] * args.steps / 60:.1f} min of training when the cores are not shared
- final training loss: {info['final_loss']:.4f}
- `open_clip_model.safetensors`: {size} bytes, sha256 `{sha}`

## Measured (after reloading the fp16 file through `local-dir:`)

Held-out single-object pictures: `iter_dataset(n, seed)` with seeds never used in
training; class captions "a {{colour}} {{shape}}" (30; "an orange ...").

{table}

image->text: each picture against the 30 class captions. text->image: each class
caption ranks all held-out pictures; R@1 = share of captions whose top picture has
that class, R@5 = share with such a picture in the top 5, P@5 = share of the top 5
that do.

## Re-train

```
{cmd}
```

Deterministic for a given torch build and thread count (fixed seeds, fixed step count).
"""
    (out / "README.md").write_text(text)


def load_via_open_clip(out: Path):
    d = str(out.resolve())
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{d}")
    return model.eval(), preprocess, tokenizer


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    set_determinism(args.seed, args.threads)
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    t = time.perf_counter()
    data = build_train_set(args, tokenizer)
    print(f"train set: {data.images.shape[0]} pictures, {data.cap_tokens.shape[0]} captions, "
          f"{time.perf_counter() - t:.1f}s", flush=True)
    model = build_model(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)
    info = train(model, data, args)
    model.eval()

    # Write to a scratch dir first, evaluate the reloaded fp16 file, then publish.
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "tiny_clip"
        save_asset(model, scratch)
        loaded, preprocess, tok = load_via_open_clip(scratch)
        m64 = evaluate(loaded, preprocess, tok, args.heldout, HELDOUT_SEED)
        mbig = evaluate(loaded, preprocess, tok, args.heldout, HELDOUT_BIG_SEED, image_size=150)
    print("held-out 64px :", fmt(m64))
    print("held-out 150px:", fmt(mbig))
    weights = save_asset(model, args.out)
    info["total_seconds"] = time.perf_counter() - t_start
    info["machine"] = f"{platform.machine()} {platform.system()}, {args.threads} threads"
    write_readme(args.out, args, info, m64, mbig, weights, n_params)
    print(f"wrote {args.out} ({weights.stat().st_size} bytes weights), "
          f"train {info['train_seconds']:.0f}s, total {info['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
