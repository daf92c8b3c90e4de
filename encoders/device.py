"""Device choice: `auto` means cuda, then mps, then cpu. Imports torch, so call it lazily."""

from __future__ import annotations

from connector.errors import EncoderError


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(
            f"device {requested!r} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device = 'auto' or 'cpu'"
        )
    return requested
