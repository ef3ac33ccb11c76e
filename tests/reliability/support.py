"""Helpers of the reliability suite: input files (textured images in any mode, forged headers), folder snapshots,
the stand-in model and the record of a run."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import PIL.Image
import torch

#: the first bytes of a HEIC file (enough for an extension- or signature-based check)
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"


def write_image(path: Path, size: Tuple[int, int] = (64, 48), mode: str = "RGB", seed: int = 0,
                fmt: Optional[str] = None, **save_kw) -> Path:
    """A textured image of ``size`` (W, H) in ``mode`` ('RGB', 'RGBA', 'L', 'I;16')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        img = PIL.Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode == "L":
        img = PIL.Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8))
    else:
        img = PIL.Image.fromarray(rng.integers(0, 255, (h, w, len(mode)), dtype=np.uint8), mode)
    img.save(path, fmt, **save_kw)
    return path


def forged_png(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims ``width`` x ``height`` (IHDR rewritten, checksum fixed): a "huge" image."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after signature(8) + length(4) + type(4)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def tree_snapshot(root: Path) -> Dict[str, Tuple[str, int, str]]:
    """``{relative path: (kind, size, sha1)}`` of everything below ``root`` ({} when it does not exist)."""
    out: Dict[str, Tuple[str, int, str]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir", 0, "")
        for name in filenames:
            full = os.path.join(dirpath, name)
            data = Path(full).read_bytes() if os.path.isfile(full) else b""
            out[os.path.relpath(full, root)] = ("file", len(data), hashlib.sha1(data).hexdigest())
    return out


#: a refused input must be refused within this many CPU seconds (the tiny inputs make any real work show up)
FAIL_FAST_S = 10.0


class SpyModel(torch.nn.Module):
    """Stands in for a MASt3R model in runs that must stop before inference: patch size 16, forward raises."""

    def __init__(self):
        super().__init__()
        self.patch_embed = torch.nn.Module()
        self.patch_embed.patch_size = (16, 16)

    def forward(self, *args, **kwargs):  # pragma: no cover - reaching it is the failure the suite reports
        raise RuntimeError("the model ran: the bad input was not refused before inference")


@dataclass
class Workspace:
    """A temporary folder with three good images (``imgs/``) and an output folder path inside ``outparent/``."""
    root: Path
    ckpts: Any  # tiny_pth fixture: name -> official .pth of a tiny model
    hf_dirs: Any  # tiny_hf fixture: name -> save_pretrained folder of a tiny model
    images: List[Path] = field(default_factory=list)

    @property
    def img_dir(self) -> Path:
        return self.root / "imgs"

    @property
    def out(self) -> Path:
        return self.root / "outparent" / "out"

    def file(self, name: str, content: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path


@dataclass
class RunResult:
    code: int
    errors: List[str]  # the lines of stderr with "error:"
    stderr: str
    forwards: int  # nn.Module forward calls during the run
    model_loads: List[str]  # sources given to the model-loading path
    seconds: float  # CPU time of the run
