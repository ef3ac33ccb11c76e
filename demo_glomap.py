#!/usr/bin/env python3
"""The original's ``demo_glomap.py`` (a gradio demo that ran the ``glomap`` binary): what replaces it here.

Large image sets are mapped in process with pycolmap's global mapper (GLOMAP) on MASt3R matches, no binary
needed, from the command line::

    python3 -m mast3r.reconstruct IMAGES_OR_DIR --weights CKPT --out OUT --mapper colmap_global \\
        [--scene-graph retrieval-20-10 --retrieval-model RETRIEVAL.pth | swin-5 | logwin-5] [--match-cache DIR]

or from a kapture pairs file with ``kapture_mast3r_mapping.py --use_glomap_mapper``. The browser demo
(``python3 demo.py``) runs MASt3R's sparse global alignment; it does not offer the COLMAP mappers yet. This
script accepts the original's flags, explains this and exits with status 2 without starting a server.
"""
import sys

MESSAGE = ("demo_glomap.py: the GLOMAP browser demo is not provided; map large image sets with\n"
           "  python3 -m mast3r.reconstruct IMAGES --weights CKPT --out OUT --mapper colmap_global "
           "[--scene-graph retrieval-Na-k --retrieval-model R.pth]\n"
           "(pycolmap's GLOMAP in process, no glomap binary), or kapture_mast3r_mapping.py --use_glomap_mapper;\n"
           "the browser demo is python3 demo.py (sparse global alignment).")


def main(argv=None) -> int:
    """Print where the GLOMAP demo's work is done now; returns 2."""
    del argv  # every flag of the original is accepted and ignored
    print(MESSAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
