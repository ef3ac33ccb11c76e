"""Depth map -> points (dust3r.utils.geometry) as the datasets use them, against the original's outputs
(tests/data/training/geometry/depth_to_points.npz)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dust3r.utils.geometry import (depthmap_to_absolute_camera_coordinates, depthmap_to_camera_coordinates,
                                   depthmap_to_pts3d)

ARR = np.load(Path(__file__).resolve().parents[2] / "data" / "training" / "geometry" / "depth_to_points.npz")


def test_camera_and_world_coordinates_bit_exact():
    depth, K, pose = ARR["input.depthmap"], ARR["input.K"], ARR["input.pose"]
    pts, valid = depthmap_to_camera_coordinates(depth, K)
    np.testing.assert_array_equal(pts, ARR["camera_coordinates.pts"])
    np.testing.assert_array_equal(valid, ARR["camera_coordinates.valid"])
    pts3d, valid = depthmap_to_absolute_camera_coordinates(depth, K, pose)
    assert pts3d.dtype == np.float32
    np.testing.assert_array_equal(pts3d, ARR["absolute.pts3d"])
    np.testing.assert_array_equal(valid, ARR["absolute.valid"])
    pts64, _ = depthmap_to_absolute_camera_coordinates(depth, K, pose.astype(np.float64))
    assert pts64.dtype == np.float64 and np.abs(pts64 - pts3d).max() < 1e-5  # dtype follows the pose
    assert (valid == (depth > 0)).all() and (depth < 0).any() and (depth == 0).any()


@pytest.mark.parametrize("focal,pp,out", [("pseudo_focal", False, "pf_nopp"), ("pseudo_focal", True, "pf_pp"),
                                          ("pseudo_focal2", True, "pf2_pp"), ("pseudo_focal2[:, :1]", False,
                                                                              "pf1ch_nopp")])
def test_depthmap_to_pts3d(focal, pp, out):
    depth = torch.from_numpy(ARR["pts3d.depth"])
    pf = torch.from_numpy(ARR["pts3d." + focal.split("[")[0]])
    if focal.endswith("[:, :1]"):
        pf = pf[:, :1]
    got = depthmap_to_pts3d(depth, pf, torch.from_numpy(ARR["pts3d.pp"]) if pp else None)
    torch.testing.assert_close(got, torch.from_numpy(ARR["pts3d." + out]), rtol=0, atol=0)
