"""dust3r_visloc.datasets: the prepared layouts (written from a synthetic scene) read back with exact geometry,
resolutions and resizing, pairs files, camera models, and the dataset-string parser."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.synthetic import make_scene
from dust3r_visloc.datasets import (VislocAachenDayNight, build_dataset, parse_dataset_string)
from dust3r_visloc.datasets.base_kapture import camera_to_opencv
from dust3r_visloc.datasets.inloc import read_alignments
from dust3r_visloc.datasets.synthetic import LAYOUTS, write_synthetic_dataset
from dust3r_visloc.datasets.utils import (get_HW_resolution, get_ordered_pairs_from_file, get_resize_function,
                                          rescale_points3d)


class _Model:  # what set_resolution reads
    class patch_embed:
        img_size = (64, 64)
        patch_size = (16, 16)


@pytest.fixture(scope="module")
def scene():
    return make_scene(n_views=5, height=48, width=64, seed=3)


class TestResolution:
    def test_trained_tables(self):
        assert get_HW_resolution(480, 640, 512) == [384, 512]
        assert get_HW_resolution(640, 480, 512) == [512, 384]
        assert get_HW_resolution(1080, 1920, 512) == [288, 512]
        assert get_HW_resolution(500, 500, 224) == [224, 224]

    def test_scaled_table_for_small_models(self):
        assert get_HW_resolution(96, 128, 128) == [96, 128]
        assert get_HW_resolution(48, 64, 64) == [48, 64]
        with pytest.raises(ValueError, match="multiple of the patch size"):
            get_HW_resolution(48, 64, 72)

    def test_resize_transforms_are_inverse_and_match_the_crop(self):
        op, to_resize, to_orig = get_resize_function(512, 16, 1200, 1700)  # wider than 4:3 -> centre crop in x
        np.testing.assert_allclose(to_orig @ to_resize, np.eye(3), atol=1e-12)
        out = op(torch.zeros(3, 1200, 1700))
        assert tuple(out.shape) == (3, 384, 512)
        crop_w = int(1200 * 512 / 384)
        left = round((1700 - crop_w) / 2)
        # the network image spans [0, 512] (COLMAP convention) -> the crop [left, left + crop_w]
        np.testing.assert_allclose(to_orig @ [0, 0, 1], [left, 0, 1])
        np.testing.assert_allclose(to_orig @ [512, 384, 1], [left + crop_w, 1200, 1])

    def test_identity_at_network_size(self):
        op, to_resize, to_orig = get_resize_function(512, 16, 384, 512)
        x = torch.rand(3, 384, 512)
        assert op(x) is x and np.array_equal(to_orig, np.eye(3))

    def test_rescale_points3d_places_points_at_their_pixels(self):
        pts2d = np.array([[0.0, 0.0], [10.0, 5.0], [99.0, 99.0]])
        pts3d = np.arange(9, dtype=np.float32).reshape(3, 3)
        to_resize = np.diag([0.5, 0.5, 1.0])
        _, pix, pmap, valid = rescale_points3d(pts2d, pts3d, to_resize, 20, 30)
        # pixel centre x maps to (x + 0.5) / 2 - 0.5
        np.testing.assert_array_equal(pix, [[0, 0], [5, 2]])
        np.testing.assert_array_equal(pmap[2, 5], pts3d[1])
        assert valid.sum() == 2


class TestPairsAndCameras:
    def test_kapture_pairs_sorted_by_score(self, tmp_path):
        p = tmp_path / "pairs.txt"
        p.write_text("# query, map, score\nq1, a, 0.2\nq1, b, 0.9\nq2, c, 0.5\nq1, d, 0.9\n")
        pairs = get_ordered_pairs_from_file(str(p))
        assert pairs["q1"] == [("b", 0.9), ("d", 0.9), ("a", 0.2)]
        assert get_ordered_pairs_from_file(str(p), topk_override=1)["q1"] == [("b", 0.9)]

    def test_hloc_pairs(self, tmp_path):
        p = tmp_path / "pairs.txt"
        p.write_text("query/iphone7/IMG_1.JPG database/cutouts/DUC1/024/cut.jpg\n")
        assert get_ordered_pairs_from_file(str(p)) == {"iphone7/IMG_1.JPG": [("DUC1/024/cut.jpg", 1.0)]}

    def test_bad_pairs_line(self, tmp_path):
        p = tmp_path / "pairs.txt"
        p.write_text("a, b\n")
        with pytest.raises(ValueError, match="pairs.txt:1"):
            get_ordered_pairs_from_file(str(p))

    @pytest.mark.parametrize("model,params,K,dist", [
        ("SIMPLE_PINHOLE", [100, 50, 40], [[100, 0, 49.5], [0, 100, 39.5]], [0, 0, 0, 0]),
        ("PINHOLE", [100, 90, 50, 40], [[100, 0, 49.5], [0, 90, 39.5]], [0, 0, 0, 0]),
        ("SIMPLE_RADIAL", [100, 50, 40, 0.1], [[100, 0, 49.5], [0, 100, 39.5]], [0.1, 0, 0, 0]),
        ("RADIAL", [100, 50, 40, 0.1, 0.2], [[100, 0, 49.5], [0, 100, 39.5]], [0.1, 0.2, 0, 0]),
        ("OPENCV", [100, 90, 50, 40, 0.1, 0.2, 0.3, 0.4], [[100, 0, 49.5], [0, 90, 39.5]], [0.1, 0.2, 0.3, 0.4]),
    ])
    def test_camera_models_converted_once_to_opencv(self, model, params, K, dist):
        K_cv, d = camera_to_opencv(model, params)
        np.testing.assert_allclose(K_cv[:2], K)
        np.testing.assert_allclose(d, dist)

    def test_unsupported_camera_model(self):
        with pytest.raises(NotImplementedError, match="FOV"):
            camera_to_opencv("FOV", [1, 2, 3, 4, 5])


class TestLayouts:
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_layout_reads_back_exact_geometry(self, layout, scene, tmp_path):
        data = write_synthetic_dataset(str(tmp_path / layout), scene, layout, topk=2)
        ds = build_dataset(data.dataset_string)
        ds.set_resolution(_Model)
        assert len(ds) == len(data.query_names) == 2
        views = ds[0]
        query, maps = views[0], views[1:]
        qi = data.query_indices[0]
        assert query["image_name"] == data.query_names[0]
        # intrinsics: the synthetic K is OpenCV-convention; converted exactly once from the COLMAP/kapture files
        np.testing.assert_allclose(query["intrinsics"], scene.K[qi], atol=1e-9)
        np.testing.assert_allclose(query["cam_to_world"], scene.cam2world[qi], atol=1e-9)
        assert tuple(query["rgb_rescaled"].shape) == (3, 48, 64)
        # retrieval order: the nearest map cameras first (pairs ranked by distance)
        centres = scene.cam2world[:, :3, 3]
        expected = sorted(data.map_indices, key=lambda i: np.linalg.norm(centres[i] - centres[qi]))[:2]
        assert [m["image_name"] for m in maps] == [data.map_names[data.map_indices.index(i)] for i in expected]
        for m, i in zip(maps, expected):
            np.testing.assert_allclose(m["intrinsics"], scene.K[i], atol=1e-9)
            np.testing.assert_allclose(m["cam_to_world"], scene.cam2world[i], atol=1e-9)
            # every stored 3D point projects onto the pixel that holds it
            ys, xs = np.nonzero(m["valid"].numpy())
            assert len(xs) >= 48 * 64 // 4
            X = m["pts3d"].numpy()[ys, xs].astype(np.float64)
            w2c = np.linalg.inv(m["cam_to_world"])
            p = (m["intrinsics"] @ (w2c[:3, :3] @ X.T + w2c[:3, 3:])).T
            np.testing.assert_allclose(p[:, :2] / p[:, 2:], np.stack([xs, ys], -1), atol=1e-3)
            assert torch.equal(m["valid_rescaled"], m["valid"])  # network size == image size here

    def test_views_need_a_resolution(self, scene, tmp_path):
        data = write_synthetic_dataset(str(tmp_path), scene, "cambridge")
        with pytest.raises(RuntimeError, match="set_resolution"):
            build_dataset(data.dataset_string)[0]

    @pytest.mark.parametrize("subscene,expected", [("day", {"day"}), ("night", {"night"}), ("all", {"day", "night"})])
    def test_aachen_subscene_filters_queries(self, subscene, expected, scene, tmp_path):
        data = write_synthetic_dataset(str(tmp_path), scene, "aachen", subscene=subscene)
        ds = VislocAachenDayNight(str(tmp_path), subscene=subscene, pairsfile="fire_top50", topk=1)
        assert {name.split("/")[1] for name in ds.scenes} == expected
        assert set(ds.scenes) <= set(data.query_names)

    def test_aachen_rejects_unknown_subscene(self, tmp_path):
        with pytest.raises(ValueError, match="subscene"):
            VislocAachenDayNight(str(tmp_path), subscene="dusk", pairsfile="x")

    def test_inloc_alignments_round_trip(self, scene, tmp_path):
        write_synthetic_dataset(str(tmp_path), scene, "inloc")
        aligns = read_alignments(str(tmp_path / "mapping" / "DUC1_alignment" / "all_transformations.txt"))
        assert list(aligns) == ["024", "026"]  # map views 0 and 4 are DUC1 cutouts, view 2 a DUC2 one
        for T in aligns.values():
            np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
            np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
        assert not np.allclose(aligns["024"], aligns["026"])

    def test_pairs_folder_in_either_spelling(self, scene, tmp_path):
        """The original's README says pairsfile/query for 7-Scenes, its code reads pairfiles/query: both work."""
        data = write_synthetic_dataset(str(tmp_path), scene, "sevenscenes")
        base = tmp_path / "chess"
        (base / "pairfiles").rename(base / "pairsfile")
        assert len(build_dataset(data.dataset_string).pairs) == 2

    def test_missing_map_folder_names_it(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="reconstruction"):
            build_dataset(f"VislocCambridgeLandmarks({str(tmp_path)!r}, subscene='ShopFacade', pairsfile='x')")


class TestDatasetString:
    def test_positional_and_keyword_literals(self):
        name, args, kwargs = parse_dataset_string("VislocInLoc('/data/InLoc/', pairsfile='p', topk=20)")
        assert (name, args, kwargs) == ("VislocInLoc", ("/data/InLoc/",), {"pairsfile": "p", "topk": 20})

    @pytest.mark.parametrize("text,match", [
        ("__import__('os').system('touch /tmp/pwned')", "must be a call"),
        ("__import__('os')", "not a dataset class"),
        ("VislocInLoc(__import__('os').getcwd(), pairsfile='p')", "only literals"),
        ("VislocInLoc(root, pairsfile='p')", "unsupported name"),
        ("VislocInLoc('/x', pairsfile='p'.upper())", "only literals"),
        ("VislocInLoc(*['/x'])", "unpacking"),
        ("os.system('ls')", "must be a call"),
        ("VislocInLoc('/x', pairsfile='p'", "syntax"),
        ("", "empty"),
    ])
    def test_refused(self, text, match, tmp_path):
        with pytest.raises(ValueError, match=match):
            build_dataset(text)
        assert not (tmp_path / "pwned").exists()

    def test_bad_arguments_name_the_class(self):
        with pytest.raises(ValueError, match="bad arguments for VislocInLoc"):
            build_dataset("VislocInLoc('/x', pairsfile='p', color='red')")
