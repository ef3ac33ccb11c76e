#!/usr/bin/env python3
"""MASt3R browser demo: ``python3 demo.py`` (official checkpoint from the hub) or ``--weights CHECKPOINT``.

See ``--help``. Errors (missing checkpoint, no CUDA, busy port...) end in one ``error:`` line and exit code 1.
"""
import logging

from mast3r.demo import get_args_parser, main

if __name__ == "__main__":
    args = get_args_parser().parse_args()
    logging.basicConfig(level=logging.WARNING if args.silent else logging.INFO, format="%(message)s")
    main(args)
