"""Command-line flags of the browser demos (the original's names) and where the checkpoint comes from."""
from __future__ import annotations

import argparse
from typing import Optional

import torch

__all__ = ["HUB_OWNER", "DUST3R_MODELS", "get_args_parser", "model_source", "default_device"]

HUB_OWNER = "naver"
DUST3R_MODELS = ("DUSt3R_ViTLarge_BaseDecoder_512_dpt", "DUSt3R_ViTLarge_BaseDecoder_512_linear",
                 "DUSt3R_ViTLarge_BaseDecoder_224_linear")


def default_device() -> str:
    """``cuda`` when available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_args_parser(prog: str = "dust3r demo", default_model: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags of the original demos (``--weights`` or ``--model_name``, server, device, image size...).

    Without ``--weights``, ``--model_name`` (default ``default_model``) names a checkpoint on the Hugging Face hub,
    downloaded once into the hub cache.
    """
    p = argparse.ArgumentParser(prog=prog, description="3D reconstruction demo in the browser (gradio)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local_network", action="store_true",
                       help="make the app reachable from the local network (listen on 0.0.0.0)")
    where.add_argument("--server_name", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--image_size", type=int, default=512,
                   help="long side the images are resized to (512 or 224 for the official checkpoints)")
    p.add_argument("--server_port", type=int, default=None,
                   help="port to serve on (default: the first free port from 7860)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", default=None, help="path to a checkpoint (.pth file or Hugging Face folder)")
    weights.add_argument("--model_name", default=default_model,
                         help="checkpoint name on the Hugging Face hub (naver/<name>) or an owner/name hub id")
    p.add_argument("--retrieval_model", default=None, help="retrieval model (enables the 'retrieval' scene graph)")
    p.add_argument("--device", default=default_device(), help="pytorch device")
    p.add_argument("--tmp_dir", default=None, help="folder for the per-session temporary files")
    p.add_argument("--silent", action="store_true", help="less logging")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link (off by default)")
    p.add_argument("--gradio_delete_cache", type=int, default=None,
                   help="every this many seconds, delete gradio's cached files older than this many seconds")
    p.add_argument("--max_images", type=int, default=64, help="most images accepted in one upload")
    return p


def model_source(weights: Optional[str], model_name: Optional[str]) -> str:
    """The checkpoint to load: ``--weights`` if given, else the hub id of ``--model_name``."""
    if weights:
        return weights
    if not model_name:
        raise ValueError("give a checkpoint with --weights PATH or --model_name NAME")
    return model_name if "/" in model_name else f"{HUB_OWNER}/{model_name}"
