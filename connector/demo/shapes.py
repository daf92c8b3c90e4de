"""Deterministic synthetic images of coloured shapes, with captions.

This module makes small pictures of coloured geometric shapes ("a red square",
"a small blue circle on a grey background") from an integer seed. It is used to
train and test the tiny CLIP model shipped in ``encoders/assets/tiny_clip`` and
to feed the offline demo with images whose content is known.

Everything here depends only on Pillow and NumPy (no torch), and the same seed
always gives the same image, caption and attributes, on any machine.

Typical use::

    from connector.demo.shapes import iter_dataset, make_shape_image

    img = make_shape_image("star", "orange", seed=7)            # PIL.Image, 64x64 RGB
    for image, caption, attrs in iter_dataset(100, seed=1):
        ...                                                      # "a large green cross"

Vocabulary:

* :data:`SHAPES` -- ``square``, ``circle``, ``triangle``, ``star``, ``cross``
* :data:`COLOURS` -- ``red``, ``green``, ``blue``, ``yellow``, ``purple``, ``orange``
* :data:`SIZES` -- ``small``, ``medium``, ``large`` (``medium`` is left out of captions)
* :data:`BACKGROUNDS` -- grey shades from ``black`` to ``white``
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "BACKGROUNDS",
    "CLASSES",
    "COLOURS",
    "COLOUR_RGB",
    "SHAPES",
    "SIZES",
    "SceneAttributes",
    "ShapeObject",
    "caption_for",
    "caption_variants",
    "class_caption",
    "class_captions",
    "iter_dataset",
    "make_scene",
    "make_shape_image",
]

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "star", "cross")
"""Shape names, in a fixed order."""

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 170, 60),
    "blue": (35, 80, 225),
    "yellow": (240, 220, 30),
    "purple": (140, 45, 190),
    "orange": (250, 135, 20),
}
"""Base RGB value of each colour; each drawn object jitters it slightly."""

COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)
"""Colour names, in a fixed order."""

SIZES: tuple[str, ...] = ("small", "medium", "large")
"""Object size words. ``medium`` objects get no size word in captions."""

# Object radius as a fraction of the image side, per size word.
_SIZE_RADIUS: dict[str, tuple[float, float]] = {
    "small": (0.12, 0.16),
    "medium": (0.19, 0.24),
    "large": (0.28, 0.35),
}

BACKGROUNDS: dict[str, tuple[int, int]] = {
    "black": (8, 35),
    "dark grey": (60, 95),
    "grey": (115, 145),
    "light grey": (170, 205),
    "white": (228, 250),
}
"""Background name -> inclusive range of its grey level (0-255)."""

CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
"""All ``(colour, shape)`` pairs: colour-major order, 30 classes."""

_SUPERSAMPLE = 4  # draw at 4x and downsample, for anti-aliased edges
_COLOUR_JITTER = 14  # max per-channel deviation from the base colour
_NOISE_SIGMA = 3.0  # Gaussian pixel noise added to the whole picture


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object. Coordinates are in pixels of the output image."""

    shape: str
    colour: str
    size_word: str
    cx: float
    cy: float
    radius: float
    rotation: float  # degrees, counter-clockwise
    rgb: tuple[int, int, int]

    @property
    def label(self) -> tuple[str, str]:
        """The ``(colour, shape)`` class of this object."""
        return (self.colour, self.shape)


@dataclass(frozen=True)
class SceneAttributes:
    """Everything known about a generated picture."""

    seed: int
    image_size: int
    background: str
    background_level: int
    objects: tuple[ShapeObject, ...]

    @property
    def primary(self) -> ShapeObject:
        """The first (or only) object."""
        return self.objects[0]

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """``(colour, shape)`` of every object, in drawing order."""
        return tuple(o.label for o in self.objects)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def class_caption(colour: str, shape: str) -> str:
    """The plain caption of one class, e.g. ``"a red square"``, ``"an orange star"``."""
    _check(colour, shape)
    return f"{_article(colour)} {colour} {shape}"


def class_captions() -> list[str]:
    """Plain captions of all :data:`CLASSES`, in the same order."""
    return [class_caption(c, s) for c, s in CLASSES]


def _object_phrase(obj: ShapeObject, *, with_size: bool) -> str:
    words = []
    if with_size and obj.size_word != "medium":
        words.append(obj.size_word)
    words += [obj.colour, obj.shape]
    return " ".join([_article(words[0]), *words])


def caption_for(
    attrs: SceneAttributes, *, with_size: bool = True, with_background: bool = True
) -> str:
    """Caption of a scene.

    ``"a small blue circle on a grey background"`` by default;
    ``"a blue circle"`` with ``with_size=False, with_background=False``. Two objects
    are joined with ``and``: ``"a red square and a large green star"``. The article
    follows the next word: ``"an orange cross"``.
    """
    text = " and ".join(_object_phrase(o, with_size=with_size) for o in attrs.objects)
    if with_background:
        text += f" on a {attrs.background} background"
    return text


def caption_variants(attrs: SceneAttributes) -> list[str]:
    """Several true captions of the same scene, plainest first (no duplicates)."""
    out: list[str] = []
    for with_size, with_bg in ((False, False), (True, False), (False, True), (True, True)):
        cap = caption_for(attrs, with_size=with_size, with_background=with_bg)
        if cap not in out:
            out.append(cap)
    return out


def _check(colour: str, shape: str) -> None:
    if colour not in COLOUR_RGB:
        raise ValueError(f"unknown colour {colour!r}; expected one of {COLOURS}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _polygon(
    shape: str, cx: float, cy: float, r: float, rot_deg: float
) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape centred on (cx, cy) with circumradius ~r."""
    if shape == "square":
        h = r * 0.82
        pts = [(-h, -h), (h, -h), (h, h), (-h, h)]
    elif shape == "triangle":
        # equilateral, pointing up, centroid at the centre; nudged down to look centred
        pts = [(r * math.cos(a), r * math.sin(a) + 0.12 * r)
               for a in (math.radians(-90), math.radians(30), math.radians(150))]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = math.radians(-90 + 36 * k)
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        t = r * 0.32  # half thickness of an arm
        pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t),
               (t, r), (-t, r), (-t, t), (-r, t), (-r, -t), (-t, -t)]
    else:  # pragma: no cover - guarded by callers
        raise ValueError(shape)
    a = math.radians(rot_deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + x * ca + y * sa, cy - x * sa + y * ca) for x, y in pts]


def _draw(draw: ImageDraw.ImageDraw, obj: ShapeObject, scale: float) -> None:
    cx, cy, r = obj.cx * scale, obj.cy * scale, obj.radius * scale
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=obj.rgb)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r, obj.rotation), fill=obj.rgb)


def _rng(seed: int) -> np.random.Generator:
    if seed < 0:
        raise ValueError("seed must be >= 0")
    return np.random.default_rng(np.random.SeedSequence([0x5A4E5, seed]))


def _radius(rng: np.random.Generator, image_size: int, size_word: str) -> float:
    lo, hi = _SIZE_RADIUS[size_word]
    return float(rng.uniform(lo, hi)) * image_size


def _place(
    rng: np.random.Generator, image_size: int, radii: Sequence[float]
) -> tuple[list[float], list[tuple[float, float]]]:
    """Random centres keeping every object inside the picture and apart from the others.

    Returns ``(radii, centres)``; the radii shrink a little if no layout is found.
    """
    gap = 0.04 * image_size
    radii = list(radii)
    while True:
        for _ in range(100):
            centres: list[tuple[float, float]] = []
            for r in radii:
                margin = r + 0.03 * image_size
                centres.append((float(rng.uniform(margin, image_size - margin)),
                                float(rng.uniform(margin, image_size - margin))))
            if all(math.hypot(p[0] - q[0], p[1] - q[1]) > rp + rq + gap
                   for i, (p, rp) in enumerate(zip(centres, radii, strict=True))
                   for q, rq in zip(centres[i + 1:], radii[i + 1:], strict=True)):
                return radii, centres
        radii = [r * 0.9 for r in radii]


def _make_object(
    rng: np.random.Generator,
    colour: str,
    shape: str,
    size_word: str,
    radius: float,
    centre: tuple[float, float],
) -> ShapeObject:
    base = COLOUR_RGB[colour]
    jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
    rgb = tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(base, jitter, strict=True))
    rotation = 0.0 if shape == "circle" else float(rng.uniform(-15.0, 15.0))
    return ShapeObject(shape, colour, size_word, centre[0], centre[1], radius, rotation,
                       (rgb[0], rgb[1], rgb[2]))


def make_scene(
    seed: int,
    *,
    size: int = 64,
    shape: str | None = None,
    colour: str | None = None,
    size_word: str | None = None,
    background: str | None = None,
    second_object: bool = False,
) -> tuple[Image.Image, SceneAttributes]:
    """Draw one scene and return ``(image, attributes)``.

    Anything left as ``None`` (shape, colour, object size, background) is drawn from
    the seed. With ``second_object=True`` a second object of another class is added
    where it does not overlap the first; both are then small or medium.
    The image is RGB, ``size`` x ``size`` pixels.
    """
    if size < 16:
        raise ValueError("size must be at least 16 pixels")
    rng = _rng(seed)
    shape = shape if shape is not None else SHAPES[int(rng.integers(len(SHAPES)))]
    colour = colour if colour is not None else COLOURS[int(rng.integers(len(COLOURS)))]
    _check(colour, shape)
    sizes = SIZES[:2] if second_object else SIZES
    size_word = size_word if size_word is not None else sizes[int(rng.integers(len(sizes)))]
    if size_word not in _SIZE_RADIUS:
        raise ValueError(f"unknown size {size_word!r}; expected one of {SIZES}")
    bg_names = tuple(BACKGROUNDS)
    if background is None:
        background = bg_names[int(rng.integers(len(bg_names)))]
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; expected one of {bg_names}")
    lo, hi = BACKGROUNDS[background]
    level = int(rng.integers(lo, hi + 1))

    specs = [(colour, shape, size_word)]
    if second_object:
        while True:
            c2 = COLOURS[int(rng.integers(len(COLOURS)))]
            s2 = SHAPES[int(rng.integers(len(SHAPES)))]
            if (c2, s2) != (colour, shape):
                break
        specs.append((c2, s2, SIZES[int(rng.integers(2))]))
    radii, centres = _place(rng, size, [_radius(rng, size, w) for _, _, w in specs])
    objects = [_make_object(rng, c, s, w, r, xy)
               for (c, s, w), r, xy in zip(specs, radii, centres, strict=True)]

    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), (level, level, level))
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        _draw(draw, obj, _SUPERSAMPLE)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.float32)
    arr = arr + rng.normal(0.0, _NOISE_SIGMA, size=arr.shape).astype(np.float32)
    image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    attrs = SceneAttributes(seed, size, background, level, tuple(objects))
    return image, attrs


def make_shape_image(
    shape: str,
    colour: str,
    *,
    seed: int,
    size: int = 64,
    size_word: str | None = None,
    background: str | None = None,
    second_object: bool = False,
) -> Image.Image:
    """One RGB picture of a ``colour`` ``shape``.

    Position, object size and background come from ``seed`` unless given.
    """
    image, _ = make_scene(seed, size=size, shape=shape, colour=colour, size_word=size_word,
                          background=background, second_object=second_object)
    return image


def iter_dataset(
    n: int,
    seed: int,
    *,
    size: int = 64,
    second_object_prob: float = 0.0,
    balanced: bool = True,
) -> Iterator[tuple[Image.Image, str, SceneAttributes]]:
    """Yield ``n`` scenes as ``(image, caption, attributes)``.

    Item ``i`` uses the scene seed ``seed * 1_000_000 + i``, so different ``seed``
    values give disjoint sets (for ``n`` below one million) and the stream is
    reproducible. With ``balanced=True`` the primary object's class cycles through
    :data:`CLASSES` (item ``i`` gets class ``i % 30``); otherwise it is random.
    ``second_object_prob`` is the chance that a scene holds a second object.
    The caption is :func:`caption_for` with size and background.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 <= second_object_prob <= 1.0:
        raise ValueError("second_object_prob must be within [0, 1]")
    if n > 1_000_000:
        raise ValueError("n must be at most 1,000,000")
    picker = _rng(seed + 0x7FFF_FFFF)
    for i in range(n):
        second = bool(picker.random() < second_object_prob) if second_object_prob > 0 else False
        colour: str | None = None
        shape: str | None = None
        if balanced:
            colour, shape = CLASSES[i % len(CLASSES)]
        image, attrs = make_scene(seed * 1_000_000 + i, size=size, shape=shape, colour=colour,
                                  second_object=second)
        yield image, caption_for(attrs), attrs
