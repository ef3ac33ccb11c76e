"""The original's mast3r.colmap helpers (kapture COLMAPDatabase path), by name: keypoints land on true
correspondences in original pixels (COLMAP convention), tracks shorter than min_len_track are dropped."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

pytest.importorskip("kapture")

from kapture.converter.colmap.database import COLMAPDatabase  # noqa: E402

from dust3r.inference import inference  # noqa: E402
from dust3r.synthetic import OracleModel, make_scene  # noqa: E402
from mast3r.colmap.database import export_images, export_matches, get_im_matches  # noqa: E402
from mast3r.colmap.mapping import remove_duplicates, scene_prepare_images  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    scene = make_scene(4, 96, 128, seed=7, baseline=0.35)
    scene.save_images(root)
    images = scene_prepare_images(str(root), 64, 16, scene.names)  # network 64x48, original 128x96
    pairs = remove_duplicates(images, [((0, "a"), (1, "b")), ((1, "b"), (0, "a")), ((1, "b"), (2, "c")),
                                       ((2, "c"), (3, "d"))])
    assert [(a["idx"], b["idx"]) for a, b in pairs] == [(0, 1), (1, 2), (2, 3)]
    out = inference(pairs, OracleModel(scene), "cpu", batch_size=1, verbose=False)
    return root, scene, images, pairs, out


def _db_rows(path):
    con = sqlite3.connect(path)
    kps = {iid: np.frombuffer(blob, np.float32).reshape(r, c) for iid, r, c, blob in
           con.execute("SELECT image_id, rows, cols, data FROM keypoints")}
    matches = {pid: np.frombuffer(blob, np.uint32).reshape(r, 2) for pid, r, blob in
               con.execute("SELECT pair_id, rows, data FROM matches")}
    n_cams = con.execute("SELECT COUNT(*) FROM cameras").fetchone()[0]
    con.close()
    return kps, matches, n_cams


@pytest.mark.parametrize("min_len_track", [2, 3])
def test_export_to_kapture_database(setup, tmp_path, min_len_track):
    root, scene, images, pairs, out = setup
    db = COLMAPDatabase.connect(str(tmp_path / "colmap.db"))
    db.create_tables()
    focals = [scene.K[k, 0, 0] / 2 for k in range(4)]  # network pixels
    image_to_colmap, im_keypoints = export_images(db, images, scene.names, focals, None, "SIMPLE_PINHOLE")
    im_matches = get_im_matches(out["pred1"], out["pred2"], pairs, image_to_colmap, im_keypoints, conf_thr=1.5,
                                subsample=4, device="cpu")
    assert sorted(im_matches) == [(0, 1), (1, 2), (2, 3)]
    written = export_matches(db, images, image_to_colmap, im_keypoints, im_matches, min_len_track, False)
    db.commit()
    db.close()
    assert len(written) == 3
    kps, matches, n_cams = _db_rows(str(tmp_path / "colmap.db"))
    assert n_cams == 4
    ids = [image_to_colmap[k]["colmap_imid"] for k in range(4)]
    n_kp = sum(len(v) for v in kps.values())
    for (a, b) in [(0, 1), (1, 2), (2, 3)]:
        pair_id = ids[a] * 2147483647 + ids[b]
        m = matches[pair_id].astype(np.int64)
        xy_a = kps[ids[a]][m[:, 0], :2] - 0.5  # original pixel centres
        xy_b = kps[ids[b]][m[:, 1], :2] - 0.5
        true_b, visible = scene.correspondences(a, b)
        r, c = np.rint(xy_a[:, 1]).astype(int), np.rint(xy_a[:, 0]).astype(int)
        assert visible[r, c].mean() > 0.95
        assert np.median(np.linalg.norm(true_b[r, c] - xy_b, axis=1)) < 1.5
    if min_len_track == 3:  # a 2-image track (a keypoint of image 0 matched only in image 1) is gone
        assert n_kp < sum(len(v) for v in im_keypoints.values())
