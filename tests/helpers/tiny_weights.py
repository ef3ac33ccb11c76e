"""Rebuild the tiny parity models' weights from their manifests (``tests/data/models/<name>.json``).

The manifests list every state_dict tensor (key, shape, sha256) and a seed string; the values follow a fixed
rule, so ~200 MB checkpoints need not be stored. Rule for key K of shape S (n values, C order), seed SEED:
``seed64`` = first 8 bytes (little endian) of sha256("SEED:K"); ``r`` = n raw 64-bit draws of numpy's PCG64
seeded with seed64; ``m = r >> 40`` (24-bit integers); ``v = (2m + 1 - 2^24) / 2^24`` in float64. Weights with
2+ dims are ``v * sqrt(3 / prod(S[1:]))``, 1-dim keys ending in 'weight' ``1 + v / 4``, other 1-dim keys
``v / 10``; cast once to float32. Alias keys reuse the tensor of the key they alias. Every tensor is checked
against the manifest's sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Dict

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / "data"
MODELS = DATA / "models"


def manifest(name: str) -> dict:
    with open(MODELS / f"{name}.json") as f:
        return json.load(f)


def _values(seed: str, key: str, shape) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape)) if shape else 1
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    draws = np.random.PCG64(int.from_bytes(digest[:8], "little")).random_raw(count)
    unit = ((draws >> np.uint64(40)).astype(np.float64) * 2.0 + 1.0 - 2.0 ** 24) / 2.0 ** 24
    if len(shape) >= 2:
        scaled = unit * np.sqrt(3.0 / float(np.prod(shape[1:])))
    elif key.endswith("weight"):
        scaled = 1.0 + 0.25 * unit
    else:
        scaled = 0.1 * unit
    return scaled.astype(np.float32).reshape(shape)


def state_dict(name_or_manifest) -> "OrderedDict[str, torch.Tensor]":
    """The model's state dict, every tensor verified against the manifest sha256."""
    entry = manifest(name_or_manifest) if isinstance(name_or_manifest, str) else name_or_manifest
    out: Dict[str, torch.Tensor] = OrderedDict()
    for item in entry["state_dict"]:
        if item.get("alias_of"):
            out[item["key"]] = out[item["alias_of"]]
            continue
        arr = _values(entry["weights_seed"], item["key"], item["shape"])
        if "sha256" in item and hashlib.sha256(arr.tobytes()).hexdigest() != item["sha256"]:
            raise RuntimeError(f"{entry['name']}: rebuilt {item['key']} does not match the manifest sha256")
        out[item["key"]] = torch.from_numpy(arr)
    return out


def write_pth(name: str, path: Path) -> Path:
    """Official .pth layout: {'model': state_dict, 'args': Namespace(model=<constructor>)}."""
    entry = manifest(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state_dict(entry), "args": argparse.Namespace(model=entry["constructor"])}, path)
    return path


def write_hf(name: str, out_dir: Path) -> Path:
    """save_pretrained layout: the shipped config.json + model.safetensors without the alias keys."""
    from safetensors.torch import save_file
    entry = manifest(name)
    if "hf" not in entry:
        raise ValueError(f"{name} has no Hugging Face section in its manifest")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODELS / entry["hf"]["config_json"], out_dir / "config.json")
    sd = state_dict(entry)
    save_file({k: sd[k].contiguous() for k in entry["hf"]["safetensors_keys"]}, str(out_dir / "model.safetensors"),
              metadata=entry["hf"].get("safetensors_metadata"))
    return out_dir
