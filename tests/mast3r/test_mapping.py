"""MASt3R-SfM mapping with pycolmap on synthetic scenes (oracle model, noise-free): cameras recovered, exports read
back by pycolmap, CLI ``--mapper`` and its input errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from dust3r.image_pairs import make_pairs  # noqa: E402
from dust3r.synthetic import OracleModel, make_scene, pose_errors  # noqa: E402
from dust3r.utils.pose_metrics import focal_rel_error  # noqa: E402
from mast3r.colmap import MappingOptions, run_colmap_mapping  # noqa: E402
from mast3r.reconstruct import main  # noqa: E402


def _orbit(n: int, height: int = 96, width: int = 128, turns: float = 0.9, seed: int = 0):
    """n cameras spread over ``turns`` of the orbit (no two nearly coincide)."""
    return make_scene(n, height, width, seed=seed, baseline=2 * np.pi * 2.8 * turns / n)


def _overlap_similarity(scene, step: int = 4) -> np.ndarray:
    """(N, N) ground-truth similarity: fraction of image i's pixels (subsampled) that image j sees."""
    n = scene.n_views
    sim = np.eye(n)
    for i in range(n):
        for j in range(n):
            if i != j:
                sim[i, j] = scene.correspondences(i, j)[1][::step, ::step].mean()
    return sim


def _check_cameras(result, scene, max_rot_deg=0.5):
    assert result.scene.n_registered == scene.n_views
    err = pose_errors(result.scene.cam2world, scene.cam2world)
    assert err["rot_deg"] < max_rot_deg, err
    assert err["center_err_rel"] < 0.01, err
    assert focal_rel_error(result.scene.K[:, 0, 0], scene.K[:, 0, 0]) < 0.01


@pytest.mark.slow
def test_global_mapping_retrieval_graph_32_images(tmp_path):
    """>= 32 images: retrieval-Na-k pairs (ground-truth overlap as similarity) -> matching -> GLOMAP."""
    scene = _orbit(32)
    views = scene.views()
    pairs = make_pairs(views, scene_graph="retrieval-4-3", symmetrize=False, sim_mat=_overlap_similarity(scene))
    assert len({tuple(sorted((a["idx"], b["idx"]))) for a, b in pairs}) < 32 * 31 // 4  # far from all pairs
    result = run_colmap_mapping(OracleModel(scene), views, scene.names, pairs, tmp_path / "work",
                                options=MappingOptions(mapper="global"), verbose=False)
    _check_cameras(result, scene)
    # the mapper's model (full tracks) round-trips through pycolmap
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    result.scene.reconstruction.write(str(model_dir))
    back = pycolmap.Reconstruction(str(model_dir))
    assert back.num_reg_images() == 32 and back.num_points3D() == result.scene.points.shape[0] > 1000
    assert back.compute_mean_reprojection_error() < 0.5


def test_incremental_mapping(tmp_path):
    scene = _orbit(12, turns=0.5, seed=1)
    views = scene.views()
    pairs = make_pairs(views, scene_graph="swin-3-noncyclic", symmetrize=False)
    result = run_colmap_mapping(OracleModel(scene), views, scene.names, pairs, tmp_path / "work",
                                options=MappingOptions(mapper="incremental"), verbose=False)
    _check_cameras(result, scene)


@pytest.fixture(scope="module")
def saved_scene(tmp_path_factory):
    scene = _orbit(10, turns=0.4, seed=2)
    return scene, scene.save_images(tmp_path_factory.mktemp("mapping_cli") / "images")


def _cli(paths, out, *extra):
    return [*paths, "--out", str(out), "--image-size", "128", "--device", "cpu", "-q", *extra]


class TestCli:
    def test_colmap_global_exports(self, saved_scene, tmp_path):
        scene, paths = saved_scene
        cache = tmp_path / "cache"
        rc = main(_cli(paths, tmp_path / "out", "--mapper", "colmap_global", "--scene-graph", "swin-3",
                       "--formats", "colmap,cameras,ply", "--match-cache", str(cache)), model=OracleModel(scene))
        assert rc == 0
        out = tmp_path / "out"
        for model_dir in (out / "colmap" / "sparse" / "0", out / "mapper" / "sparse" / "0"):
            rec = pycolmap.Reconstruction(str(model_dir))  # both models read back by pycolmap
            assert rec.num_reg_images() == 10
            c2w = np.zeros((10, 4, 4))
            for image in rec.images.values():
                k = scene.names.index(image.name)
                w2c = np.eye(4)
                w2c[:3] = image.cam_from_world().matrix()
                c2w[k] = np.linalg.inv(w2c)
            assert pose_errors(c2w, scene.cam2world)["rot_deg"] < 0.5
        assert (out / "mapper" / "database.db").is_file() and (out / "cameras.json").is_file()
        assert not (out / "mapper" / "match_cache").exists()
        n_cached = sum(len(f) for _, _, f in os.walk(cache))
        assert n_cached >= 9  # the persistent cache kept every pair

        # a second run with the same cache matches nothing again
        from mast3r.colmap import match_cache

        calls = []
        original = match_cache._match_batch
        try:
            match_cache._match_batch = lambda *a, **k: calls.append(a) or original(*a, **k)
            assert main(_cli(paths, tmp_path / "out2", "--mapper", "colmap_global", "--scene-graph", "swin-3",
                             "--formats", "cameras", "--match-cache", str(cache)), model=OracleModel(scene)) == 0
        finally:
            match_cache._match_batch = original
        assert calls == []

    def test_bad_inputs(self, saved_scene, tmp_path, capsys):
        scene, paths = saved_scene
        assert main(_cli(paths[:2], tmp_path / "o1", "--mapper", "colmap_global"), model=OracleModel(scene)) == 2
        assert "needs at least 3 images" in capsys.readouterr().err
        (tmp_path / "file").write_text("x")
        assert main(_cli(paths, tmp_path / "o2", "--mapper", "colmap_incremental", "--match-cache",
                         str(tmp_path / "file")), model=OracleModel(scene)) == 2
        assert "--match-cache" in capsys.readouterr().err
        assert main(_cli(paths, tmp_path / "o3", "--mapper", "colmap_global", "--min-track-length", "1"),
                    model=OracleModel(scene)) == 2
        assert "min_track_length" in capsys.readouterr().err
        assert main(_cli(paths, tmp_path / "o5", "--mapper", "colmap_global", "--scene-graph", "retrieval-3-2"),
                    model=OracleModel(scene)) == 2
        assert "needs an image-retrieval model" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(_cli(paths, tmp_path / "o4", "--mapper", "glomap_binary"))
        assert not any((tmp_path / f"o{k}").exists() for k in range(1, 6))


class TestOptions:
    @pytest.mark.parametrize("kw, message", [
        (dict(mapper="hierarchical"), "mapper"), (dict(camera_model="FOV"), "camera_model"),
        (dict(subsample=0), "subsample"), (dict(conf_thr=float("nan")), "conf_thr"),
        (dict(max_error=0.0), "max_error")])
    def test_bad(self, kw, message):
        with pytest.raises(ValueError, match=message):
            MappingOptions(**kw)

    def test_too_few_views_and_no_pairs(self, tmp_path):
        scene = make_scene(3, 48, 64, seed=0)
        with pytest.raises(ValueError, match="at least 2 images"):
            run_colmap_mapping(OracleModel(scene), scene.views()[:1], ["a"], [], tmp_path, verbose=False)
        with pytest.raises(ValueError, match="no image pairs"):
            run_colmap_mapping(OracleModel(scene), scene.views(), scene.names, [(1, 1)], tmp_path, verbose=False)


def test_scene_data_of_registered_views_only():
    from mast3r.colmap import MappedScene, MappingError

    views = make_scene(3, 48, 64, seed=0).views()
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[2, :3, 3] = [1.0, 0.0, 0.0]
    K = np.tile(np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]]), (3, 1, 1))
    points = np.array([[0.0, 0.0, 2.0], [0.5, 0.0, 3.0]])
    obs = [(np.array([5, 70, 70]), np.array([0, 1, 1])),  # image 0 sees point 1 twice (one pixel kept)
           (np.zeros(0, np.int64), np.zeros(0, np.int64)),
           (np.array([9]), np.array([0]))]                # point 0 already placed by image 0
    mapped = MappedScene(np.array([True, False, True]), c2w, K, points, np.zeros((2, 3), np.uint8), obs)
    data = mapped.to_scene_data(views, ["a.png", "b.png", "c.png"])
    assert data.names == ["a.png", "c.png"]
    np.testing.assert_allclose(data.cam2world[1], c2w[2])
    assert data.masks[0].sum() == 2 and data.masks[1].sum() == 0
    np.testing.assert_allclose(data.pts3d[0].reshape(-1, 3)[[5, 70]], points)
    with pytest.raises(MappingError, match="no registered image"):
        MappedScene(np.zeros(3, bool), c2w, K, points, np.zeros((2, 3), np.uint8), obs).to_scene_data(views)


def test_rerun_in_the_same_work_dir_reuses_matches(tmp_path):
    scene = _orbit(6, turns=0.25, seed=4)
    views = scene.views()
    pairs = make_pairs(views, scene_graph="swin-2-noncyclic", symmetrize=False)
    first = run_colmap_mapping(OracleModel(scene), views, scene.names, pairs, tmp_path, verbose=False)
    assert first.match_stats == {"pairs": 9, "cached": 0, "computed": 9}
    again = run_colmap_mapping(OracleModel(scene), views, scene.names, pairs, tmp_path, verbose=False)
    assert again.match_stats == {"pairs": 9, "cached": 9, "computed": 0}
    assert again.scene.n_registered == 6 and os.path.isfile(again.index.path)
    assert sorted(os.listdir(tmp_path / "sparse")) == ["0"]
