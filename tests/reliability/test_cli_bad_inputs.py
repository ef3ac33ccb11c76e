"""Bad inputs to ``python -m mast3r.reconstruct``, one table row each (issue 11).

Every row asserts the target behaviour: exit code 2, an ``error:`` line that names the bad input, no traceback,
refused before the model is loaded and before inference (no ``nn.Module`` forward ran, within
:data:`FAIL_FAST_S` CPU seconds), and the output folder's parent exactly as it was (no result, no staging folder,
an existing ``--out`` unchanged).

Runs are in-process (``mast3r.reconstruct.main(argv)``) with a real tiny MASt3R checkpoint on the command line
(``--weights``; a row about checkpoints gives its own) and the model-loading path replaced by a spy, so a row also
asserts that the model was not loaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, List, Tuple

import pytest
import torch

from .support import FAIL_FAST_S, HEIC_HEAD, Workspace, forged_png, tree_snapshot, write_image

K_OK = {"fx": 50.0, "fy": 50.0, "cx": 32.0, "cy": 24.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Row:
    """One bad input: ``build(ws) -> (argv, names)``; ``names`` must all appear in one ``error:`` line."""
    id: str
    build: Callable[[Workspace], Tuple[List[str], List[str]]]
    cuda_machine_skips: bool = False


# ---------------------------------------------------------------------------------------------------------------
# row builders
# ---------------------------------------------------------------------------------------------------------------
def _corrupt_png(ws):
    ws.file("imgs/corrupt.png", PNG_SIGNATURE + b"\x00garbage" * 64)
    return [ws.img_dir], ["corrupt.png"]


def _zero_byte(ws):
    ws.file("imgs/zero.jpg", b"")
    return [ws.img_dir], ["zero.jpg"]


def _not_an_image(ws):
    notes = ws.file("notes.txt", b"these are my notes, not an image")
    return [*ws.images, notes], ["notes.txt"]


def _truncated_jpeg(ws):
    path = write_image(ws.img_dir / "cut.jpg", (320, 240), fmt="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [ws.img_dir], ["cut.jpg"]


def _one_pixel(ws):
    write_image(ws.img_dir / "dot.png", (1, 1))
    return [ws.img_dir], ["dot.png"]


def _extreme_aspect(ws):
    write_image(ws.img_dir / "strip.png", (4000, 20))
    return [ws.img_dir], ["strip.png"]


def _huge_header(ws):
    forged_png(ws.img_dir / "huge.png", 100_000, 80_000)
    return [ws.img_dir], ["huge.png", "too large"]


def _heic_without_pillow_heif(ws):
    heic = ws.file("IMG_0001.HEIC", HEIC_HEAD)
    return [*ws.images, heic], ["IMG_0001.HEIC", "pillow-heif"]


def _empty_folder(ws):
    (ws.root / "empty_folder").mkdir()
    return [ws.root / "empty_folder"], ["empty_folder"]


def _missing_path(ws):
    return [*ws.images, ws.root / "nope.png"], ["nope.png"]


def _symlink_loop(ws):
    loop = ws.root / "loop"
    os.symlink(loop, loop)
    return [*ws.images, loop], ["loop"]


def _known_K(ws, content) -> str:
    return str(ws.file("K.json", json.dumps(content).encode()))


def _duplicate_base_names(ws):
    a = write_image(ws.root / "dupA" / "same.png", seed=1)
    b = write_image(ws.root / "dupB" / "same.png", seed=2)
    k = _known_K(ws, {"same.png": K_OK})
    return [a, b, ws.images[0], "--known-intrinsics", k], ["same.png", "dupA", "dupB"]


def _K_last_row_zero(ws):
    k = _known_K(ws, {"K": [[50, 0, 32], [0, 50, 24], [0, 0, 0]]})
    return [ws.img_dir, "--known-intrinsics", k], ["K.json", "last row"]


def _K_absurd_principal_point(ws):
    k = _known_K(ws, {"img_001.png": {"fx": 50, "fy": 50, "cx": -99999, "cy": 1e12}})
    return [ws.img_dir, "--known-intrinsics", k], ["K.json", "img_001.png", "principal point"]


def _K_nan(ws):
    k = _known_K(ws, {"img_002.png": {"fx": float("nan"), "fy": 50, "cx": 32, "cy": 24}})
    return [ws.img_dir, "--known-intrinsics", k], ["K.json", "img_002.png"]


def _ckpt(ws, name, content):
    return [ws.img_dir, "--weights", ws.file(name, content)], [name]


def _ckpt_truncated(ws):
    data = ws.ckpts("dust3r_tiny_linear").read_bytes()
    return _ckpt(ws, "truncated.pth", data[: len(data) // 3])


def _ckpt_not_a_checkpoint(ws):
    return _ckpt(ws, "notes.pth", b"this is not a checkpoint")


def _ckpt_empty(ws):
    return _ckpt(ws, "empty.pth", b"")


def _ckpt_dust3r_for_mast3r(ws):
    path = ws.ckpts("dust3r_tiny_linear")
    return [ws.img_dir, "--weights", path], [path.name, "DUSt3R"]


def _ckpt_dust3r_hf_folder_for_mast3r(ws):
    path = ws.hf_dirs("dust3r_tiny_linear")
    return [ws.img_dir, "--weights", path], [path.name, "DUSt3R"]


def _ckpt_folder_without_config(ws):
    (ws.root / "hf_model").mkdir()
    return [ws.img_dir, "--weights", ws.root / "hf_model"], ["hf_model"]


def _ckpt_missing(ws):
    return [ws.img_dir, "--weights", ws.root / "missing.pth"], ["missing.pth"]


def _option(*argv, names):
    return lambda ws: ([ws.img_dir, *argv], list(names))


def _out_proc(ws):
    return [ws.img_dir, "--out", "/proc/x"], ["/proc/x"]


def _out_is_file(ws):
    ws.out.write_text("I am a file")
    return [ws.img_dir], [str(ws.out)]


def _out_below_a_file(ws):
    (ws.out.parent / "afile").write_text("x")
    return [ws.img_dir, "--out", ws.out.parent / "afile" / "sub"], ["afile"]


def _out_previous_result(ws):
    ws.out.mkdir()
    (ws.out / "scene.glb").write_bytes(b"result of an earlier run")
    (ws.out / "colmap.zip").write_bytes(b"lists images of the earlier run")
    return [ws.img_dir], [str(ws.out), "--overwrite"]


def _out_foreign_folder_with_overwrite(ws):
    ws.out.mkdir()
    (ws.out / "thesis.tex").write_text("precious")
    return [ws.img_dir, "--overwrite"], [str(ws.out)]


ROWS = [
    Row("corrupt-png", _corrupt_png),
    Row("zero-byte-jpg", _zero_byte),
    Row("non-image-file", _not_an_image),
    Row("truncated-jpeg", _truncated_jpeg),
    Row("1x1-image", _one_pixel),
    Row("extreme-aspect-200to1", _extreme_aspect),
    Row("huge-image-8-gigapixels", _huge_header),
    Row("heic-without-pillow-heif", _heic_without_pillow_heif),
    Row("empty-folder", _empty_folder),
    Row("missing-path", _missing_path),
    Row("symlink-loop", _symlink_loop),
    Row("duplicate-base-names-known-K", _duplicate_base_names),
    Row("K-last-row-000", _K_last_row_zero),
    Row("K-cx-99999-cy-1e12", _K_absurd_principal_point),
    Row("K-nan-focal", _K_nan),
    Row("ckpt-truncated", _ckpt_truncated),
    Row("ckpt-not-a-checkpoint", _ckpt_not_a_checkpoint),
    Row("ckpt-0-byte", _ckpt_empty),
    Row("ckpt-dust3r-for-mast3r", _ckpt_dust3r_for_mast3r),
    Row("ckpt-dust3r-hf-folder-for-mast3r", _ckpt_dust3r_hf_folder_for_mast3r),
    Row("ckpt-folder-without-config", _ckpt_folder_without_config),
    Row("ckpt-missing", _ckpt_missing),
    Row("scene-graph-swin-abc", _option("--scene-graph", "swin-abc", names=["swin-abc"])),
    Row("scene-graph-oneref-out-of-range", _option("--scene-graph", "oneref-9", names=["oneref-9"])),
    Row("scene-graph-retrieval", _option("--scene-graph", "retrieval-20-1", names=["retrieval-20-1"])),
    Row("image-size-0", _option("--image-size", "0", names=["--image-size", "0"])),
    Row("image-size-negative", _option("--image-size", "-5", names=["--image-size", "-5"])),
    Row("image-size-8", _option("--image-size", "8", names=["--image-size", "8"])),
    Row("image-size-not-a-number", _option("--image-size", "big", names=["--image-size", "big"])),
    Row("formats-unknown", _option("--formats", "glb,obj", names=["obj"])),
    Row("niter1-negative", _option("--niter1", "-3", names=["niter1"])),
    Row("device-cuda-without-cuda", _option("--device", "cuda", names=["cuda"]), cuda_machine_skips=True),
    Row("device-unknown", _option("--device", "gpu0", names=["gpu0"])),
    Row("out-proc-x", _out_proc),
    Row("out-is-a-file", _out_is_file),
    Row("out-below-a-file", _out_below_a_file),
    Row("out-previous-result-without-overwrite", _out_previous_result),
    Row("out-foreign-folder-with-overwrite", _out_foreign_folder_with_overwrite),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_refused_before_work(row: Row, ws: Workspace, run_cli, monkeypatch):
    if row.cuda_machine_skips and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    import dust3r.utils.image as image
    monkeypatch.setattr(image, "heif_available", lambda: False)  # as on a machine without pillow-heif
    argv, names = row.build(ws)
    # defaults first: a row's own --out / --image-size / --weights come later and win
    argv = ["--weights", ws.ckpts("mast3r_tiny_a"), "--image-size", "64", "--niter1", "2", "--niter2", "1",
            "--quiet", "--out", ws.out, *argv]
    before = tree_snapshot(ws.out.parent)

    result = run_cli(argv)

    assert result.code == 2, f"exit code {result.code}; stderr:\n{result.stderr[-1500:]}"
    assert "Traceback" not in result.stderr
    assert result.errors, f"no 'error:' line; stderr:\n{result.stderr[-1500:]}"
    assert any(all(n in line for n in names) for line in result.errors), \
        f"no error line names {names}: {result.errors}"
    assert result.model_loads == [], f"the model was loaded ({result.model_loads}) before the input was refused"
    assert result.forwards == 0, f"{result.forwards} module forward(s) ran before the input was refused"
    assert result.seconds < FAIL_FAST_S
    assert tree_snapshot(ws.out.parent) == before, "the output folder's parent changed"
    assert not os.path.exists("/proc/x")
