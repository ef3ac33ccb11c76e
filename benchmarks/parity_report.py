"""Largest relative error per model stage against the original implementation's reference arrays.

For every tiny parity model in ``tests/data`` this runs the model on its reference pair, records every stage
(forward hooks, reference naming) and prints, per stage, the largest ``max|ours - ref| / max|ref|`` over all
models, together with the tolerance used by the tests. Run from the repository root::

    python benchmarks/parity_report.py
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dust3r.inference import inference  # noqa: E402
from dust3r.model_loading import load_pretrained  # noqa: E402
from tests.helpers import tiny_weights  # noqa: E402
from tests.parity import DATA, MODELS, fixture_pairs, record_module_outputs, rel_err, tolerance  # noqa: E402


def stage_of(key: str) -> str:
    """Group a reference key into a stage name (block indices and call numbers dropped)."""
    key = re.sub(r"^fwd\.", "", key)
    key = re.sub(r"\.call\d+", "", key)
    key = re.sub(r"(blocks2?)\.\d+", r"\1.*", key)
    key = re.sub(r"(act_postprocess)\.\d+", r"\1.*", key)
    key = re.sub(r"layer\d_rn", "layer*_rn", key)
    key = re.sub(r"refinenet\d", "refinenet*", key)
    key = re.sub(r"downstream_head\d", "head*", key)
    return key


def collect(name: str, model, tmp: Path) -> dict:
    errors = defaultdict(float)
    pairs, ref = fixture_pairs(name)
    out = inference(pairs, model, "cpu", batch_size=1, verbose=False)
    for part in ("pred1", "pred2"):
        for key in out[part]:
            for k in range(2):
                errors[f"output {part}.{key}"] = max(errors[f"output {part}.{key}"],
                                                     rel_err(out[part][key][k], ref[f"pair{k}.{part}.{key}"]))
    inter = np.load(DATA / "inference" / f"{name}_intermediates.npz")
    got, _, handles = record_module_outputs(model)
    v1, v2 = pairs[0]
    with torch.no_grad():
        model(*(dict(v, true_shape=torch.from_numpy(v["true_shape"]), instance=[v["instance"]]) for v in (v1, v2)))
    for h in handles:
        h.remove()
    for key in inter.files:
        if key.startswith("encode_image.") or key.endswith(".pos"):
            continue
        base = key[:-2] if key.endswith(".x") else key
        value = got[base]
        value = value[0] if isinstance(value, tuple) else value
        errors[stage_of(key)] = max(errors[stage_of(key)], rel_err(value, inter[key]))
    return errors


def main() -> dict:
    torch.set_num_threads(2)
    import tempfile
    worst = defaultdict(lambda: (0.0, ""))
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            model = load_pretrained(tiny_weights.write_pth(name, Path(tmp) / f"{name}.pth"))
            for stage, err in collect(name, model, Path(tmp)).items():
                if err >= worst[stage][0]:
                    worst[stage] = (err, name)
    print("| stage | largest rel. error | model | test tolerance |")
    print("|---|---|---|---|")
    for stage, (err, name) in sorted(worst.items(), key=lambda kv: (not kv[0].startswith("output"), kv[0])):
        print(f"| {stage} | {err:.2e} | {name} | {tolerance(stage):.0e} |")
    return dict(worst)


if __name__ == "__main__":
    main()
