"""InLoc in the kapture layout of the original's preparation instructions::

    root/query/     kapture folder of the query photos (intrinsics)
    root/mapping/   kapture folder of the database cutouts (poses, images, <cutout>.mat with ``XYZcut``)
    root/mapping/DUC1_alignment/all_transformations.txt, root/mapping/DUC2_alignment/...   scan alignments
    root/pairfiles/query/<pairsfile>.txt   retrieval pairs (kapture ``query, map, score`` or hloc format)

The cutouts' ``XYZcut`` points (scan frame) are moved to the building frame with the scan's alignment.
"""
from __future__ import annotations

import os
import re
from typing import Dict

import numpy as np

from dust3r.utils.geometry import geotrf

from .base_dataset import BaseVislocDataset
from .base_kapture import BaseVislocKaptureDataset, KaptureRecords
from .utils import get_ordered_pairs_from_file, pairsfile_path

__all__ = ["VislocInLoc", "read_alignments"]

_ICP_HEADER = "After general icp:"


def read_alignments(path_to_alignment: str) -> Dict[str, np.ndarray]:
    """``{scan id: (4, 4) transform}`` of an InLoc ``all_transformations.txt``: each block starts with the scan
    id alone on a line ('024') and its matrix follows the line ``After general icp:``."""
    if not os.path.isfile(path_to_alignment):
        raise FileNotFoundError(f"alignment file not found: {path_to_alignment}")
    with open(path_to_alignment, "r") as f:
        lines = [line.rstrip("\n\r") for line in f]
    aligns, scan, i = {}, None, 0
    while i < len(lines):
        line = lines[i]
        if re.fullmatch(r"\d{3}", line.strip()):
            scan = line.strip()
        elif line.strip() == _ICP_HEADER and scan is not None:
            rows = [[float(v) for v in lines[i + 1 + r].split()] for r in range(4)]
            aligns[scan] = np.array(rows, dtype=np.float64).reshape(4, 4)
            scan, i = None, i + 4
        i += 1
    return aligns


class VislocInLoc(BaseVislocKaptureDataset, BaseVislocDataset):
    """InLoc queries against the DUC1 / DUC2 cutouts."""

    def __init__(self, root: str, pairsfile: str, topk: int = 1):
        super().__init__()
        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.root, self.topk = root, int(topk)
        self.num_views = self.topk + 1
        self.query_records = KaptureRecords(os.path.join(root, "query"))
        self.map_records = KaptureRecords(os.path.join(root, "mapping"), require_trajectories=True)
        self.pairs = get_ordered_pairs_from_file(pairsfile_path(root, pairsfile))
        self.scenes = self.query_records.names()
        self.aligns_DUC1 = read_alignments(os.path.join(root, "mapping", "DUC1_alignment", "all_transformations.txt"))
        self.aligns_DUC2 = read_alignments(os.path.join(root, "mapping", "DUC2_alignment", "all_transformations.txt"))

    def map_pointmap(self, imgname: str, view: dict) -> np.ndarray:
        import scipy.io

        path = self.map_records.record_path(imgname + ".mat")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cutout 3D file not found: {path}")
        xyz = np.asarray(scipy.io.loadmat(path)["XYZcut"], dtype=np.float64)
        parts = imgname.replace("\\", "/").split("/")
        aligns = self.aligns_DUC1 if parts[0] == "DUC1" else self.aligns_DUC2
        if len(parts) < 2 or parts[1] not in aligns:
            raise KeyError(f"no scan alignment for cutout {imgname!r}")
        return geotrf(aligns[parts[1]], xyz).astype(np.float32)
