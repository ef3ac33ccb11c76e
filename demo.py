#!/usr/bin/env python3
"""MASt3R browser demo: ``python3 demo.py --weights CHECKPOINT`` (see ``--help``)."""
from mast3r.demo import get_args_parser, main

if __name__ == "__main__":
    main(get_args_parser().parse_args())
