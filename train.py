#!/usr/bin/env python3
"""Train MASt3R (or DUSt3R): ``torchrun --nproc_per_node=N train.py --train_dataset ... --model ...``.

The original's command lines run unchanged (see the README's training section and ``python3 train.py -h``). Model,
criterion and dataset strings are parsed against allow-lists, never evaluated. The work is in
:mod:`mast3r.training` (MASt3R's losses, datasets and default model over the loop of :mod:`dust3r.training`).
"""
import argparse
from typing import Optional, Sequence

from mast3r.training import get_args_parser, train


def main(argv: Optional[Sequence[str]] = None) -> None:
    base = get_args_parser()
    parser = argparse.ArgumentParser(prog=base.prog, parents=[base])
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
