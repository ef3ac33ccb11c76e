"""dust3r.datasets.utils.cropping and BaseStereoViewDataset._crop_resize_if_necessary against the original's
outputs (tests/data/training/geometry/cropping.npz: sizes, intrinsics, sha256 of image and depth bytes)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dust3r.datasets.base.base_stereo_view_dataset import BaseStereoViewDataset
from dust3r.datasets.utils import cropping

GEOM = Path(__file__).resolve().parents[2] / "data" / "training" / "geometry"
INDEX = json.loads((GEOM / "index.json").read_text())["cropping"]
CASES = INDEX["cases"]
UTILITIES = {u["call"]: u for u in INDEX["utilities"]}
ARR = np.load(GEOM / "cropping.npz")


def sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def inputs(kind):
    """(img, depth, K) of the derived inputs of the fixture (README: exact numpy ops)."""
    img, depth = ARR["input.landscape.img"], ARR["input.landscape.depthmap"]
    if kind == "portrait":
        img, depth = img.transpose(1, 0, 2), depth.T
    elif kind == "square":
        img, depth = img[:, :420], depth[:, :420]
    elif kind == "small":
        img, depth = img[0:384:2, 0:512:2], depth[0:384:2, 0:512:2]
    return np.ascontiguousarray(img), np.ascontiguousarray(depth), ARR[f"input.{kind}.K"].copy()


def check_case(tag, cls):
    case = next(c for c in CASES if c["tag"] == tag)
    img, depth, K = inputs(case["input"])
    res = tuple(case["resolution"])
    ds = cls(resolution=res, aug_crop=16 if "aug16" in tag else False)
    rng = np.random.default_rng(int(case["rng"][len("np.random.default_rng("):-1])) if case["rng"] else None
    out_img, out_depth, out_K = ds._crop_resize_if_necessary(img, depth, K, res, rng=rng)
    assert list(out_img.size) == case["output_size_wh"]
    assert out_K.dtype == np.float32 and out_depth.dtype == np.float32
    np.testing.assert_array_equal(out_K, ARR[f"{tag}.K"])
    np.testing.assert_array_equal(out_K, np.float32(case["output_K"]))
    assert sha(np.asarray(out_img)) == case["output_img_sha256"]
    assert sha(out_depth) == case["output_depth_sha256"]
    if f"{tag}.img" in ARR.files:
        np.testing.assert_array_equal(np.asarray(out_img), ARR[f"{tag}.img"])
        np.testing.assert_array_equal(out_depth, ARR[f"{tag}.depthmap"])


@pytest.mark.parametrize("tag", [c["tag"] for c in CASES if c["tag"].startswith("d_")])
def test_dust3r_crop_resize_matches_original(tag):
    check_case(tag, BaseStereoViewDataset)


@pytest.mark.parametrize("res", [(512, 384), (512, 336), (512, 288), (512, 256), (512, 160), (224, 224)])
def test_rescale_image_depthmap(res):
    img, depth, K = inputs("landscape")
    for force in (True, False):
        u = UTILITIES[f"rescale_image_depthmap(img, depth, K, {res}{'' if force else ', force=False'})"]
        out, d, K2 = cropping.rescale_image_depthmap(img, depth, K, res, force=force)
        assert list(out.size) == u["size_wh"] and sha(np.asarray(out)) == u["img_sha256"]
        np.testing.assert_array_equal(K2, np.float32(u["K"]))
        if force:
            assert sha(d) == u["depth_sha256"]
    u = UTILITIES[f"camera_matrix_of_crop(K, img.size, {res}, scaling=1.25, offset_factor=0.25)"]
    K3 = cropping.camera_matrix_of_crop(K, (560, 420), res, scaling=1.25, offset_factor=0.25)
    np.testing.assert_array_equal(K3, np.float32(u["K"]))


def test_crop_bbox_and_intrinsics_conventions():
    img, depth, K = inputs("landscape")
    u = UTILITIES["bbox_from_intrinsics_in_out(K, [[500,0,255.6],[0,500,190.2],[0,0,1]], (512, 384))"]
    bbox = cropping.bbox_from_intrinsics_in_out(K, np.array([[500, 0, 255.6], [0, 500, 190.2], [0, 0, 1]]),
                                                (512, 384))
    assert [int(b) for b in bbox] == u["bbox"]
    u = UTILITIES["crop_image_depthmap(img, depth, K, (13, 7, 313, 207))"]
    out, d, K2 = cropping.crop_image_depthmap(img, depth, K, (13, 7, 313, 207))
    assert list(out.size) == u["size_wh"] and sha(np.asarray(out)) == u["img_sha256"] and sha(d) == u["depth_sha256"]
    np.testing.assert_array_equal(K2, np.float32(u["K"]))
    u = UTILITIES["colmap_to_opencv_intrinsics(K) / opencv_to_colmap_intrinsics(K)"]
    np.testing.assert_array_equal(cropping.colmap_to_opencv_intrinsics(K), np.float32(u["colmap_to_opencv"]))
    np.testing.assert_array_equal(cropping.opencv_to_colmap_intrinsics(K), np.float32(u["opencv_to_colmap"]))


def test_crop_keeps_pixel_rays():
    """A pixel's ray (K^-1 (x, y, 1)) is the same before and after crop + rescale (up to the resampling grid)."""
    img, depth, K = inputs("landscape")
    out, d, K2 = cropping.rescale_image_depthmap(img, depth, K, (280, 210))
    # pixel centre (x, y) of the output maps to input (x + 0.5) / s - 0.5
    s = 0.5
    for x, y in [(0, 0), (100, 50), (279, 209)]:
        ray_out = np.linalg.inv(K2) @ np.array([x, y, 1.0])
        ray_in = np.linalg.inv(K) @ np.array([(x + 0.5) / s - 0.5, (y + 0.5) / s - 0.5, 1.0])
        np.testing.assert_allclose(ray_out, ray_in, atol=1e-5)


def test_errors():
    img, depth, K = inputs("landscape")
    with pytest.raises(ValueError, match="does not match"):
        cropping.rescale_image_depthmap(img, depth.T, K, (224, 224))
    with pytest.raises(ValueError, match="cannot crop"):
        cropping.camera_matrix_of_crop(K, (100, 100), (200, 100))
    with pytest.raises(ValueError, match="landscape"):
        cropping.choose_orientation((100, 100), (100, 200), np.random.default_rng(0))
