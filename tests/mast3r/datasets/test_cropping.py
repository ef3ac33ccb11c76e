"""mast3r.datasets.utils.cropping against the original: random crops, homography crops, in2d_rect and the seeded
ground-truth correspondences (exact values and exact rng consumption)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mast3r.datasets.utils.cropping import (crop_to_homography, extract_correspondences_from_pts3d,
                                            gen_random_crops, in2d_rect)

GEOM = Path(__file__).resolve().parents[2] / "data" / "training" / "geometry"
INDEX = json.loads((GEOM / "index.json").read_text())
UTILITIES = {u["call"].split("(")[0]: u for u in INDEX["cropping"]["utilities"]}
CROP = np.load(GEOM / "cropping.npz")
CORR = np.load(GEOM / "correspondences.npz")
CALLS = {c["tag"]: c for c in INDEX["correspondences"]["calls"]}


def _views():
    return [{k: CORR[f"input.view{v}.{k}"] for k in ("depthmap", "camera_intrinsics", "camera_pose", "pts3d")}
            for v in (0, 1)]


def test_gen_random_crops_and_homography():
    crops = gen_random_crops((560, 420), 4, (512, 384), aug_crop=173.0, rng=np.random.default_rng(2025))
    assert crops.dtype == np.float64
    np.testing.assert_array_equal(crops, np.array(UTILITIES["gen_random_crops"]["exact_float64_values"]))
    u = UTILITIES["crop_to_homography"]
    imsize, K2, R, H = crop_to_homography(CROP["input.landscape.K"], crops[1], (512, 384))
    assert list(imsize) == u["imsize"] and K2.dtype == np.float32
    np.testing.assert_array_equal(K2, CROP["crop_to_homography.K"])
    np.testing.assert_allclose(R, np.array(u["R_float64"]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(H, np.array(u["H_float64"]), rtol=1e-12)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)


def test_in2d_rect():
    u = UTILITIES["in2d_rect"]
    crops = gen_random_crops((560, 420), 4, (512, 384), aug_crop=173.0, rng=np.random.default_rng(2025))
    assert in2d_rect(np.array(u["pts"]), crops).tolist() == u["result"]


def test_all_reciprocal_correspondences():
    v0, v1 = _views()
    c1, c2 = extract_correspondences_from_pts3d(v0, v1, target_n_corres=None)
    assert c1.dtype == np.int64
    np.testing.assert_array_equal(c1, CORR["all.corres1"])
    np.testing.assert_array_equal(c2, CORR["all.corres2"])


@pytest.mark.parametrize("tag,n,nneg", [("n_nneg0", 384, 0), ("n_nneg05", 384, 0.5), ("n_nneg09", 384, 0.9),
                                        ("n_large_nneg0", 5334, 0)])
def test_seeded_correspondences_and_rng_consumption(tag, n, nneg):
    v0, v1 = _views()
    rng = np.random.default_rng(2024)
    c1, c2, valid = extract_correspondences_from_pts3d(v0, v1, n, rng, nneg=nneg)
    np.testing.assert_array_equal(c1, CORR[f"{tag}.corres1"])
    np.testing.assert_array_equal(c2, CORR[f"{tag}.corres2"])
    np.testing.assert_array_equal(valid, CORR[f"{tag}.valid"])
    assert int(valid.sum()) == CALLS[tag]["n_positives"] and int((~valid).sum()) == CALLS[tag]["n_negatives"]
    state = rng.bit_generator.state
    want = CALLS[tag]["rng_state_after_call"]
    assert (str(state["state"]["state"]), str(state["state"]["inc"])) == (want["state"], want["inc"])
    assert (state["has_uint32"], state["uinteger"]) == (want["has_uint32"], want["uinteger"])


def test_positives_are_true_matches():
    v0, v1 = _views()
    c1, c2 = extract_correspondences_from_pts3d(v0, v1, target_n_corres=None)
    p1 = v0["pts3d"][c1[:, 1], c1[:, 0]]
    p2 = v1["pts3d"][c2[:, 1], c2[:, 0]]
    # matched pixels see (nearly) the same 3D point: within a pixel footprint at the scene's depth
    assert np.median(np.linalg.norm(p1 - p2, axis=1)) < 0.05


def test_too_many_correspondences_is_a_clear_error():
    v0, v1 = _views()
    with pytest.raises(ValueError, match="cannot draw"):
        extract_correspondences_from_pts3d(v0, v1, 128 * 96 * 2, np.random.default_rng(0))
