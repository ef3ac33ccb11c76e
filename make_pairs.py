#!/usr/bin/env python3
"""Image folder -> pairs file (``# query_image, map_image, score`` lines, kapture's pairs format), with any scene
graph of ``make_pairs``, including ``retrieval-Na-k`` ranked by MASt3R's retrieval model.

    python3 make_pairs.py --dir images/ --output pairs.txt --scene_graph retrieval-20-10 \\
        --weights checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth \\
        --retrieval_model checkpoints/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric_retrieval_trainingfree.pth

Images are the readable image files below ``--dir`` (recursively), named relative to it, sorted. Every pair is
written in both directions, sorted, with score 1.0 (as the original). Flags are the original's; ``--weights`` /
``--model_name`` are only needed for retrieval graphs, and ``--device`` defaults to cuda when available.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from PIL import Image, UnidentifiedImageError

from dust3r.inputs import InputError, check_scene_graph
from mast3r.image_pairs import make_pairs
from mast3r.utils.misc import mkdir_for

logger = logging.getLogger("make_pairs")

DEFAULT_MODEL = "MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
PAIRS_HEADER = "# kapture format: 1.1\n# query_image, map_image, score\n"


def get_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="image pairs of a folder (scene graphs of make_pairs, retrieval)")
    parser.add_argument("--dir", required=True, help="image dir")
    parser.add_argument("--scene_graph", default="retrieval-20-10",
                        help="complete, swin-N[-noncyclic], logwin-N[-noncyclic], oneref-ID or retrieval-Na-k")
    parser.add_argument("--output", required=True, help="txt file")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=str, default=None, help="path to the model weights")
    weights.add_argument("--model_name", type=str, default=None, choices=[DEFAULT_MODEL],
                         help="name of the model weights")
    parser.add_argument("--retrieval_model", default=None, type=str, help="retrieval_model to be loaded")
    parser.add_argument("--device", type=str, default=None, help="pytorch device (default: cuda if available)")
    return parser


def get_image_list(images_path: str) -> List[str]:
    """Readable image files below ``images_path``, as sorted paths relative to it (others skipped, logged)."""
    names = sorted(os.path.relpath(os.path.join(root, f), images_path)
                   for root, _, files in os.walk(images_path) for f in files)
    images = []
    for name in names:
        try:
            with Image.open(os.path.join(images_path, name)):
                images.append(name)
        except (OSError, UnidentifiedImageError):
            logger.info("skipping %s: not an image", name)
    return images


def write_pairs(path: str, pairs: Sequence[tuple]) -> None:
    """``query, map, score`` lines under the kapture header (the folder is created)."""
    with open(mkdir_for(path), "w", encoding="utf-8") as f:
        f.write(PAIRS_HEADER)
        f.writelines(f"{a}, {b}, {score}\n" for a, b, score in pairs)


def main(dir: str, scene_graph: str, output: str, backbone=None, retrieval_model: Optional[str] = None,
         device=None) -> List[tuple]:
    """Write the pairs file of the images in ``dir``; returns the ``(query, map, score)`` rows written.

    ``backbone`` (a MASt3R model) and ``retrieval_model`` (checkpoint path) are needed by retrieval graphs only.

    Raises:
        InputError: no image in ``dir``, a bad scene graph, a retrieval graph without a retrieval model.
    """
    if not os.path.isdir(dir):
        raise InputError(f"--dir {dir!r} is not a folder")
    imgs = get_image_list(dir)
    if not imgs:
        raise InputError(f"no image in {dir!r}")
    graph = check_scene_graph(scene_graph, max(len(imgs), 2), retrieval=retrieval_model is not None)
    sim_matrix = None
    if graph.startswith("retrieval"):
        from mast3r.retrieval.processor import retrieval_similarity

        sim_matrix = retrieval_similarity([os.path.join(dir, name) for name in imgs], retrieval_model,
                                          backbone=backbone, device=device)
    pairs = make_pairs(imgs, graph, prefilter=None, symmetrize=True, sim_mat=sim_matrix)
    rows = sorted({(a, b, 1.0) for a, b in pairs})
    write_pairs(output, rows)
    logger.info("%d images, %d pairs written to %s", len(imgs), len(rows), output)
    return rows


def cli(argv: Optional[Sequence[str]] = None) -> int:
    args = get_argparser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        backbone = None
        if args.scene_graph.strip().startswith("retrieval") and args.retrieval_model is not None:
            import torch

            from mast3r.model import AsymmetricMASt3R

            device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
            source = args.weights or "naver/" + (args.model_name or DEFAULT_MODEL)
            backbone = AsymmetricMASt3R.from_pretrained(source).to(device)
            args.device = device
        main(args.dir, args.scene_graph, args.output, backbone, args.retrieval_model, device=args.device)
    except (InputError, ValueError, OSError, ImportError) as exc:  # CheckpointError is a ValueError
        print(f"make_pairs.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
