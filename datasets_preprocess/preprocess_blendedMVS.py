#!/usr/bin/env python3
"""The original's script name: runs :mod:`datasets_preprocess.preprocess_blendedmvs` (same flags)."""
import logging
import sys

from datasets_preprocess.preprocess_blendedmvs import get_parser, main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_parser().parse_args()
    sys.exit(main(args.blendedmvs_dir, args.precomputed_pairs, args.output_dir))
