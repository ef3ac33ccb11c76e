"""Browser demo (gradio): two photos in, MASt3R matches out.

Run ``python3 demo.py --weights checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth`` (or
``--model_name MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric`` to fetch it from the Hugging Face hub) and open
the printed address. The server listens on 127.0.0.1 unless ``--local_network`` or ``--server_name`` say
otherwise.
"""
from __future__ import annotations

import argparse
import logging
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from dust3r.inference import inference
from dust3r.utils.image import load_images, rgb

from .fast_nn import fast_reciprocal_NNs
from .viz import draw_matches

logger = logging.getLogger(__name__)

HUB_OWNER = "naver"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="MASt3R browser demo")
    p.add_argument("--model_name", default="MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric",
                   help="checkpoint name on the Hugging Face hub (naver/<name>), used when --weights is not given")
    p.add_argument("--weights", default=None, help="path to a checkpoint (.pth file or Hugging Face directory)")
    p.add_argument("--retrieval_model", default=None, help="retrieval model (not used by the two-view demo)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--image_size", type=int, default=512, choices=[512, 224])
    p.add_argument("--server_name", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--server_port", type=int, default=None, help="port (default: first free port from 7860)")
    p.add_argument("--local_network", action="store_true", help="listen on 0.0.0.0 (reachable from the network)")
    p.add_argument("--share", action="store_true", help="create a public gradio link")
    p.add_argument("--tmp_dir", default=None, help="where session files are written")
    p.add_argument("--silent", action="store_true", help="less logging")
    p.add_argument("--gradio_delete_cache", type=int, default=None,
                   help="delete gradio's cached files older than this many seconds")
    return p


def model_source(weights: Optional[str], model_name: str) -> str:
    """The checkpoint to load: ``--weights`` if given, else the hub id of ``--model_name``."""
    if weights:
        return weights
    return model_name if "/" in model_name else f"{HUB_OWNER}/{model_name}"


def free_port(start: int = 7860, host: str = "127.0.0.1", tries: int = 100) -> int:
    """First port >= ``start`` that can be bound on ``host``."""
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    raise OSError(f"no free port in [{start}, {start + tries})")


def server_address(server_name: Optional[str], local_network: bool) -> str:
    return server_name or ("0.0.0.0" if local_network else "127.0.0.1")


@dataclass
class MatchResult:
    """Matches between two images in network pixels, with the images (H, W, 3) in [0, 1]."""
    img0: np.ndarray
    img1: np.ndarray
    xy0: np.ndarray
    xy1: np.ndarray

    def drawing(self, n_viz: Optional[int] = 20) -> np.ndarray:
        return draw_matches(self.img0, self.img1, self.xy0, self.xy1, n_viz=n_viz)


def match_two_images(model, images: Sequence, device: str, image_size: int = 512, subsample: int = 8,
                     border: int = 3) -> MatchResult:
    """Inference on the pair and reciprocal descriptor matches, without matches within ``border`` px of an edge."""
    if len(images) != 2:
        raise ValueError(f"the matching demo needs exactly 2 images, got {len(images)}")
    views = load_images(list(images), size=image_size, verbose=False)
    out = inference([tuple(views)], model, device, batch_size=1, verbose=False)
    pred1, pred2 = out["pred1"], out["pred2"]
    if "desc" not in pred1:
        raise ValueError("this checkpoint predicts no descriptors (a DUSt3R model?): use a MASt3R checkpoint")
    desc1, desc2 = pred1["desc"].squeeze(0), pred2["desc"].squeeze(0)
    xy0, xy1 = fast_reciprocal_NNs(desc1, desc2, subsample_or_initxy1=subsample, device=device, dist="dot",
                                   block_size=2 ** 13)
    shapes = [np.asarray(v["true_shape"]).reshape(2) for v in views]
    keep = np.ones(len(xy0), dtype=bool)
    for xy, (H, W) in zip((xy0, xy1), shapes):
        keep &= (xy[:, 0] >= border) & (xy[:, 0] < W - border) & (xy[:, 1] >= border) & (xy[:, 1] < H - border)
    imgs = [rgb(v["img"])[0] for v in views]
    return MatchResult(imgs[0], imgs[1], np.asarray(xy0)[keep], np.asarray(xy1)[keep])


def build_app(model, device: str, image_size: int = 512, tmp_dir: Optional[str] = None):
    """The gradio Blocks app (gradio imported here, only when the demo is used)."""
    try:
        import gradio as gr
    except ImportError as exc:
        raise ImportError("the browser demo needs gradio: pip install gradio") from exc

    def run(files: List, n_viz: int):
        paths = [f if isinstance(f, str) else f.name for f in (files or [])]
        if len(paths) != 2:
            return None, f"Please upload exactly 2 images (got {len(paths)})."
        try:
            result = match_two_images(model, paths, device, image_size)
        except (ValueError, OSError) as exc:
            return None, f"Error: {exc}"
        return result.drawing(n_viz), f"{len(result.xy0)} matches"

    with gr.Blocks(title="MASt3R matching demo") as app:
        gr.Markdown("## MASt3R: two-view matching\nUpload two photos of the same scene and press **Run**.")
        files = gr.File(file_count="multiple", label="images")
        n_viz = gr.Slider(1, 200, value=20, step=1, label="matches drawn")
        button = gr.Button("Run")
        picture = gr.Image(label="matches")
        status = gr.Markdown()
        button.click(run, inputs=[files, n_viz], outputs=[picture, status])
    return app


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO)
    from .model import AsymmetricMASt3R
    model = AsymmetricMASt3R.from_pretrained(model_source(args.weights, args.model_name), device=args.device)
    host = server_address(args.server_name, args.local_network)
    port = args.server_port or free_port(7860, host)
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="mast3r_demo_") as tmp:
        app = build_app(model, args.device, args.image_size, tmp)
        logger.info("serving on http://%s:%d", host, port)
        app.launch(server_name=host, server_port=port, share=args.share)
