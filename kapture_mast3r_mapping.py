#!/usr/bin/env python3
"""Map a kapture dataset or a folder of images with MASt3R matches and pycolmap (the original's script name).

::

    python3 kapture_mast3r_mapping.py --weights CKPT | --model_name NAME \\
        (-i KAPTURE_DIR | --dir IMAGES | --dir_same_camera IMAGES) --pairsfile_path PAIRS.txt -o OUT \\
        [--use_glomap_mapper] [--pixel_tol 0] [--conf_thr 1.001] [--min_len_track 5] [--device cuda]

The original's flags are kept. What changed: the mappers run in process through pycolmap
(``pycolmap.global_mapping`` for ``--use_glomap_mapper``, else ``pycolmap.incremental_mapping``), so
``--glomap_bin`` is accepted and ignored; the matches stream through a resumable cache (``OUT/match_cache``). Not
supported (refused with a message): ``--dense_matching``; triangulation with the kapture's known poses (use
``--ignore_pose`` to map from scratch); ``--skip_geometric_verification`` (pycolmap verifies every pair).

Outputs: ``OUT/database.db`` (COLMAP database) and ``OUT/reconstruction`` (the model, binary). The pairs file is
kapture's: ``image1, image2[, score]`` per line (names relative to the image folder), ``#`` comments.
The work is :func:`main`; reading kapture needs the ``kapture`` package (``pip install kapture``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence, Tuple

logger = logging.getLogger("kapture_mast3r_mapping")

MODEL_NAMES = ("MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric",)


def get_argparser() -> argparse.ArgumentParser:
    from dust3r.app.flags import default_device

    parser = argparse.ArgumentParser(description="MASt3R matching + pycolmap mapping from kapture data or images")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", type=str, default=None, help="path to the model weights")
    weights.add_argument("--model_name", type=str, choices=MODEL_NAMES, help="name of the model weights")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--input", default=None, help="kapture folder")
    source.add_argument("--dir", default=None, help="image folder (one camera per image)")
    source.add_argument("--dir_same_camera", default=None, help="image folder (one shared camera)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--pairsfile_path", required=True, help="kapture pairs file")
    parser.add_argument("--glomap_bin", default="glomap", help="ignored: GLOMAP runs through pycolmap")
    mapper = parser.add_mutually_exclusive_group()
    mapper.add_argument("--ignore_pose", action="store_true", default=False)
    mapper.add_argument("--use_glomap_mapper", action="store_true", default=False)
    matching = parser.add_mutually_exclusive_group()
    matching.add_argument("--dense_matching", action="store_true", default=False)
    matching.add_argument("--pixel_tol", default=0, type=int)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--conf_thr", default=1.001, type=float)
    parser.add_argument("--skip_geometric_verification", action="store_true", default=False)
    parser.add_argument("--min_len_track", default=5, type=int)
    parser.add_argument("--image_size", default=512, type=int, help="long side of the network input")
    return parser


def read_pairsfile(path: str) -> List[Tuple[str, str]]:
    """``[(image1, image2), ...]`` from a kapture pairs file (``name1, name2[, score]`` lines, ``#`` comments)."""
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise ValueError(f"{path}:{lineno}: expected 'image1, image2[, score]', got {line!r}")
            pairs.append((parts[0], parts[1]))
    return pairs


def list_images(root: str, kapture_dir: Optional[str]) -> Tuple[str, List[str]]:
    """``(image root, names relative to it)`` from a kapture folder or an image folder (sorted)."""
    if kapture_dir is not None:
        try:
            from kapture.io.csv import kapture_from_dir
            from kapture.io.records import get_image_fullpath
        except ImportError:
            raise SystemExit("error: -i/--input needs the kapture package (pip install kapture)") from None
        kdata = kapture_from_dir(kapture_dir)
        if kdata.records_camera is None:
            raise ValueError(f"kapture {kapture_dir!r} has no camera records")
        return get_image_fullpath(kapture_dir), sorted(kdata.records_camera.data_list())
    from dust3r.utils.image import image_files_in_folder

    files = image_files_in_folder(root)[0]
    return root, sorted(os.path.relpath(f, root).replace(os.sep, "/") for f in files)


def main(argv: Optional[Sequence[str]] = None, model=None) -> int:
    """Run the script; returns the exit code (0 ok, 2 bad input / unsupported option, 1 failure)."""
    args = get_argparser().parse_args(argv)
    for flag, why in (("dense_matching", "dense matching is not supported, use the default sparse matching"),
                      ("skip_geometric_verification", "pycolmap verifies every pair; the flag is not supported")):
        if getattr(args, flag):
            print(f"error: --{flag}: {why}", file=sys.stderr)
            return 2
    from dust3r.reconstruction import prepare_views
    from dust3r.utils.views import model_patch_size
    from mast3r.colmap import MappingOptions, run_colmap_mapping

    try:
        root, names = list_images(args.dir or args.dir_same_camera, args.input)
        if args.input is not None and not args.ignore_pose and not args.use_glomap_mapper:
            logger.warning("triangulation with the kapture's known poses is not supported: mapping from scratch")
        index = {name: k for k, name in enumerate(names)}
        pairs = []
        for a, b in read_pairsfile(args.pairsfile_path):
            if a not in index or b not in index:
                raise ValueError(f"pairs file names an unknown image: {a if a not in index else b!r}")
            pairs.append((index[a], index[b]))
        if model is None:
            from dust3r.app.launch import load_model

            model = load_model(args.weights or "naver/" + args.model_name, args.device)
        views, _ = prepare_views([os.path.join(root, n) for n in names], args.image_size, model_patch_size(model))
        options = MappingOptions(mapper="global" if args.use_glomap_mapper else "incremental",
                                 pixel_tol=args.pixel_tol, conf_thr=args.conf_thr,
                                 min_track_length=max(2, args.min_len_track),
                                 shared_intrinsics=args.dir_same_camera is not None)
        result = run_colmap_mapping(model, views, names, pairs, args.output, image_dir=root, device=args.device,
                                    options=options)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one line; the traceback at debug level
        logger.debug("mapping failed", exc_info=True)
        print(f"error: mapping failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = os.path.join(args.output, "reconstruction")
    os.makedirs(out, exist_ok=True)
    result.scene.reconstruction.write(out)
    print(f"{result.scene.n_registered}/{len(names)} images registered; model: {out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(main())
