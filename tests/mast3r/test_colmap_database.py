"""mast3r.colmap.database: the COLMAP database written from cached MASt3R matches, read back with pycolmap."""
from __future__ import annotations

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from dust3r.synthetic import OracleModel, make_scene  # noqa: E402
from dust3r.utils.image import load_images  # noqa: E402
from mast3r.cloud_opt.forward_cache import image_fingerprint  # noqa: E402
from mast3r.colmap.database import verify_database, write_colmap_database  # noqa: E402
from mast3r.colmap.match_cache import MatchCache, compute_matches  # noqa: E402

N = 6
PAIRS = [(i, j) for i in range(N) for j in range(i + 1, min(N, i + 3))]


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    """Views loaded at half the size of the saved PNGs (so original pixels differ from network pixels)."""
    root = tmp_path_factory.mktemp("colmap_db")
    scene = make_scene(N, 96, 128, seed=5, baseline=0.35)
    paths = scene.save_images(root / "images")
    views = load_images(paths, size=64, verbose=False)
    model = OracleModel(scene)
    cache = MatchCache.for_model(root / "cache", model, subsample=4)
    fps = [image_fingerprint(v) for v in views]
    compute_matches(model, views, PAIRS, cache, verbose=False, fingerprints=fps)
    return dict(root=root, scene=scene, views=views, cache=cache, fps=fps, names=scene.names)


def _write(matched, name, **kw):
    return write_colmap_database(matched["root"] / name, matched["views"], matched["names"], matched["cache"], PAIRS,
                                 matched["fps"], **kw)


class TestWriteDatabase:
    def test_contents_in_original_pixels(self, matched):
        index = _write(matched, "plain.db")
        scene = matched["scene"]
        with pycolmap.Database.open(index.path) as db:
            assert db.num_images() == N and db.num_cameras() == N
            assert db.num_matched_image_pairs() == index.n_pairs == len(PAIRS)
            for k, image_id in enumerate(index.image_ids):
                image = db.read_image(image_id)
                assert image.name == scene.names[k]
                cam = db.read_camera(image.camera_id)
                assert (cam.width, cam.height) == (128, 96)  # the original image, not the 64x48 network input
                assert cam.has_prior_focal_length
                # focal from the pointmaps, converted to original pixels; principal point at the centre
                assert cam.params[0] == pytest.approx(scene.K[k, 0, 0], rel=2e-3)
                np.testing.assert_allclose(cam.params[1:], [64.0, 48.0], atol=1e-6)
                kp = db.read_keypoints(image_id)[:, :2]
                flat = index.keypoints[k]
                net = np.stack([flat % 64, flat // 64], axis=1)
                np.testing.assert_allclose(kp, 2.0 * (net + 0.5), atol=1e-4)  # COLMAP: top-left centre at 0.5
            # every match links the same surface point: check against the renderer's correspondences
            for i, j in PAIRS:
                m = db.read_matches(index.image_ids[i], index.image_ids[j])
                assert len(m) > 15
                xy_i = db.read_keypoints(index.image_ids[i])[m[:, 0], :2] - 0.5  # original pixel centres
                xy_j = db.read_keypoints(index.image_ids[j])[m[:, 1], :2] - 0.5
                true_j, visible = scene.correspondences(i, j)
                r, c = np.rint(xy_i[:, 1]).astype(int), np.rint(xy_i[:, 0]).astype(int)
                assert visible[r, c].mean() > 0.97
                err = np.linalg.norm(true_j[r, c] - xy_j, axis=1)
                assert np.median(err) < 1.5  # one network pixel is two original pixels

    def test_verification_gives_geometries(self, matched):
        index = _write(matched, "verified.db")
        assert verify_database(index.path, max_error=2.0) == len(PAIRS)
        with pycolmap.Database.open(index.path) as db:
            pair_ids, geoms = db.read_two_view_geometries()
            assert len(geoms) == len(PAIRS)
            assert all(len(g.inlier_matches) >= 15 for g in geoms)

    def test_track_filter(self, matched):
        full = _write(matched, "full.db")
        index = _write(matched, "tracks3.db", min_track_length=3)
        assert 0 < sum(map(len, index.keypoints)) < sum(map(len, full.keypoints))
        # recompute the tracks from what was written: every keypoint left is in a track of >= 3 images
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        offsets = np.concatenate([[0], np.cumsum([len(k) for k in index.keypoints])])
        rows, cols = [], []
        with pycolmap.Database.open(index.path) as db:
            for i, j in PAIRS:
                if db.exists_matches(index.image_ids[i], index.image_ids[j]):
                    m = db.read_matches(index.image_ids[i], index.image_ids[j]).astype(np.int64)
                    rows.append(m[:, 0] + offsets[i])
                    cols.append(m[:, 1] + offsets[j])
        r, c = np.concatenate(rows), np.concatenate(cols)
        _, label = connected_components(coo_matrix((np.ones(len(r)), (r, c)), shape=(offsets[-1],) * 2))
        image_of = np.repeat(np.arange(N), np.diff(offsets))
        n_images = [len(np.unique(image_of[label == lab])) for lab in np.unique(label)]
        assert min(n_images) >= 3

    def test_shared_camera(self, matched):
        index = _write(matched, "shared.db", shared_intrinsics=True, camera_model="PINHOLE")
        with pycolmap.Database.open(index.path) as db:
            assert db.num_cameras() == 1
            cam = db.read_camera(db.read_image(index.image_ids[0]).camera_id)
            assert cam.model.name == "PINHOLE"
            assert cam.params[0] == pytest.approx(matched["scene"].K[0, 0, 0], rel=2e-3)

    def test_known_intrinsics(self, matched):
        K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])  # original pixels, OpenCV convention
        index = _write(matched, "known.db", known_K={0: K})
        with pycolmap.Database.open(index.path) as db:
            cam = db.read_camera(db.read_image(index.image_ids[0]).camera_id)
            np.testing.assert_allclose(cam.params, [100.0, 64.0, 48.0], atol=1e-6)


class TestBadInputs:
    def test_existing_database(self, matched):
        (matched["root"] / "exists.db").write_text("x")
        with pytest.raises(ValueError, match="already exists"):
            _write(matched, "exists.db")

    @pytest.mark.parametrize("kw, message", [
        (dict(camera_model="FISHEYE"), "camera_model"), (dict(min_track_length=1), "min_track_length")])
    def test_bad_options(self, matched, kw, message):
        with pytest.raises(ValueError, match=message):
            _write(matched, f"bad_{message}.db", **kw)

    def test_duplicate_names(self, matched):
        with pytest.raises(ValueError, match="unique image names"):
            write_colmap_database(matched["root"] / "dup.db", matched["views"], ["a.png"] * N, matched["cache"],
                                  PAIRS, matched["fps"])

    def test_pair_not_matched(self, matched):
        with pytest.raises(ValueError, match=r"no matches in the cache for pair \(0, 5\)"):
            write_colmap_database(matched["root"] / "missing.db", matched["views"], matched["names"],
                                  matched["cache"], [(0, 5)], matched["fps"])
