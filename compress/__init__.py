"""CoroNetGAN's compress stage: hypernetwork-driven channel search, materialisation, converging training.

Public API (loaded on first use, so ``import compress.errors`` stays light)::

    from compress import compress_model, load_generator
    report = compress_model("cyclegan", 0.75, "runs/h2z", dataset="horse2zebra")
    generator, architecture = load_generator("runs/h2z")
"""
from __future__ import annotations

__all__ = ["compress_model", "load_generator"]


def __getattr__(name: str):
    if name == "compress_model":
        from compress.api import compress_model

        return compress_model
    if name == "load_generator":
        from compress.artifacts import load_generator

        return load_generator
    raise AttributeError(f"module 'compress' has no attribute {name!r}")
