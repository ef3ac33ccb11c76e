#!/usr/bin/env python3
"""DUSt3R dense global-alignment browser demo: ``python3 demo_dust3r_ga.py --weights CHECKPOINT`` (see ``--help``).

Works with DUSt3R and MASt3R checkpoints (``--weights`` path, or ``--model_name`` hub name). Errors end in one
``error:`` line and exit code 1.
"""
import logging

from dust3r.demo import get_args_parser, main

if __name__ == "__main__":
    args = get_args_parser(prog="demo_dust3r_ga", default_model="DUSt3R_ViTLarge_BaseDecoder_512_dpt").parse_args()
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO, format="%(message)s")
    main(args)
