"""Tests of mast3r.cloud_opt.scene: the SparseGA scene object's dense points, its TSDF option and its metadata."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.image_pairs import make_pairs
from dust3r.synthetic import OracleModel, make_scene
from dust3r.utils.views import VIEW_META_KEYS
from mast3r.cloud_opt.scene import view_meta
from mast3r.cloud_opt.sparse_ga import sparse_global_alignment
from mast3r.cloud_opt.tsdf_optimizer import TSDFPostProcess


@pytest.fixture(scope="module")
def solved():
    scene = make_scene(2, 48, 64, seed=0)
    views = scene.views()
    pairs = make_pairs(views, scene_graph="complete", symmetrize=True)
    res = sparse_global_alignment([v["instance"] for v in views], pairs, None, OracleModel(scene), niter1=40,
                                  niter2=20, opt_pp=False, verbose=False, known_poses=scene.cam2world,
                                  known_intrinsics=scene.K)
    return scene, res


@pytest.fixture(scope="module")
def tsdf_points(solved):
    return solved[1].get_dense_pts3d(clean_depth=True, tsdf_thresh=0.05)


class TestSparseGA:
    def test_tsdf_option_is_the_post_process(self, solved, tsdf_points):
        scene, res = solved
        pts, depths, confs = tsdf_points
        ref_pts, ref_depths, ref_confs = TSDFPostProcess(res, TSDF_thresh=0.05).get_dense_pts3d(clean_depth=True)
        for a, b in zip(pts + depths + confs, ref_pts + ref_depths + ref_confs):
            torch.testing.assert_close(a, b)
        assert pts[0].shape == (48 * 64, 3) and all(torch.isfinite(p).all() for p in pts)
        assert np.median(np.abs(depths[0].numpy().reshape(48, 64) / scene.depth[0] - 1)) < 0.05
        # tsdf_thresh=0 is the plain dense cloud
        plain = res.get_dense_pts3d(clean_depth=True)
        torch.testing.assert_close(res.get_dense_pts3d(clean_depth=True, tsdf_thresh=0.0)[0][1], plain[0][1])
        with pytest.raises(ValueError, match="tsdf_thresh"):
            res.get_dense_pts3d(tsdf_thresh=-1.0)

    def test_export_uses_the_scene_interface_without_changing_it(self, solved, tsdf_points, tmp_path):
        from dust3r.export import SceneData, SparseSceneLike, export_all
        _, res = solved
        assert isinstance(res, SparseSceneLike)
        poses = res.get_im_poses().clone()
        data = SceneData.from_scene(res, min_conf_thr=1.5, tsdf_thresh=0.05)
        pts, _, confs = tsdf_points
        np.testing.assert_allclose(data.pts3d[1].reshape(-1, 3), pts[1].numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(data.masks[0], confs[0].numpy() > 1.5)
        out = export_all(res, tmp_path, formats=("ply", "cameras"))
        assert sorted(out) == ["cameras", "ply"]
        torch.testing.assert_close(res.get_im_poses(), poses)

    def test_view_meta_keys(self, solved):
        _, res = solved
        assert set(res.views_meta[0]) == set(VIEW_META_KEYS)
        assert view_meta({"img": None, "true_shape": [[4, 4]]}) is None
