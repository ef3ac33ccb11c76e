"""Tests of dust3r.export: round trips through trimesh / pycolmap / our COLMAP reader, conventions, errors."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest

from dust3r.export import (SceneData, export_all, export_cameras_json, export_colmap, export_depthmaps, export_glb,
                           export_nerfstudio, export_ply, read_colmap_model, rotmat_to_qvec, qvec_to_rotmat)
from dust3r.utils.geometry import opencv_to_colmap_intrinsics
from dust3r.utils.image import load_images


# ------------------------------------------------------------------------------------------------
# synthetic, self-consistent scenes: pts3d = cam2world(depth * K^-1 [x, y, 1])
# ------------------------------------------------------------------------------------------------
def look_at(centre, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    centre = np.asarray(centre, float)
    z = np.asarray(target, float) - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], 1)
    T[:3, 3] = centre
    return T


def backproject(K, cam2world, depth):
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    X = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
    return X @ cam2world[:3, :3].T + cam2world[:3, 3]


def make_data(shapes=((12, 16), (12, 16), (10, 14)), seed=0, views_meta=None, masks=None, confs=False,
              names=None) -> SceneData:
    rng = np.random.default_rng(seed)
    imgs, Ks, poses, pts, depths = [], [], [], [], []
    for i, (H, W) in enumerate(shapes):
        a = np.deg2rad(25 * i)
        T = look_at([3 * np.sin(a), -0.4 + 0.1 * i, -3 * np.cos(a)])
        K = np.array([[1.2 * W, 0, W / 2 - 0.3], [0, 1.25 * W, H / 2 + 0.2], [0, 0, 1]])
        d = (2.5 + 0.5 * rng.random((H, W))).astype(np.float32)
        imgs.append(rng.random((H, W, 3)).astype(np.float32))
        Ks.append(K)
        poses.append(T)
        pts.append(backproject(K, T, d.astype(np.float64)).astype(np.float32))
        depths.append(d)
    conf = [1 + rng.random(s).astype(np.float32) * 5 for s in shapes] if confs else None
    return SceneData(images=imgs, K=np.stack(Ks), cam2world=np.stack(poses), pts3d=pts, masks=masks,
                     confs=conf, depths=depths, views_meta=views_meta, names=names)


@pytest.fixture(scope="module")
def data() -> SceneData:
    return make_data()


@pytest.fixture(scope="module")
def photo_views(tmp_path_factory):
    """Two real files loaded at size 64: 200x150 -> 64x48 (no crop), 210x150 -> 64x46 -> crop to 64x32 (y0=7)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    paths = []
    for name, (w, h) in (("first.png", (200, 150)), ("second.jpg", (210, 150))):
        p = folder / name
        PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    views = load_images(paths, size=64, verbose=False)
    assert [tuple(v["true_shape"][0]) for v in views] == [(48, 64), (32, 64)]
    return views


@pytest.fixture(scope="module")
def photo_data(photo_views) -> SceneData:
    shapes = [tuple(int(s) for s in v["true_shape"][0]) for v in photo_views]
    return make_data(shapes=shapes, views_meta=photo_views, confs=True)


def hand_K_original(K, W0, H0, W1, H1, x0, y0):
    sx, sy = W0 / W1, H0 / H1
    return np.array([[K[0, 0] * sx, 0, (K[0, 2] + x0 + 0.5) * sx - 0.5],
                     [0, K[1, 1] * sy, (K[1, 2] + y0 + 0.5) * sy - 0.5],
                     [0, 0, 1]])


# ------------------------------------------------------------------------------------------------
class TestSceneData:
    def test_defaults(self, data):
        assert data.n == 3 and data.names == ["image_0000.png", "image_0001.png", "image_0002.png"]
        assert all(m.all() for m in data.masks)
        # z-depth recomputed from pts3d equals the depth used to build them
        recomputed = SceneData(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=data.pts3d)
        for a, b in zip(recomputed.depths, data.depths):
            np.testing.assert_allclose(a, b, atol=1e-4)

    def test_names_from_files_and_nan_masked(self, photo_views):
        shapes = [tuple(int(s) for s in v["true_shape"][0]) for v in photo_views]
        d = make_data(shapes=shapes, views_meta=photo_views)
        assert d.names == ["first.png", "second.jpg"]
        pts = [p.copy() for p in d.pts3d]
        pts[0][0, 0] = np.nan
        d2 = SceneData(images=d.images, K=d.K, cam2world=d.cam2world, pts3d=pts, views_meta=photo_views)
        assert not d2.masks[0][0, 0] and d2.masks[0].sum() == 48 * 64 - 1
        assert "img" not in d2.views_meta[0]  # only the metadata is kept

    def test_duplicate_file_names_made_unique(self):
        meta = [{"filepath": "/x/a.png"}, {"filepath": "/y/a.png"}]
        d = make_data(shapes=((4, 5), (4, 5)), views_meta=meta)
        assert d.names == ["a.png", "a_1.png"]

    def test_flat_pts_accepted(self, data):
        d = SceneData(images=data.images, K=data.K, cam2world=data.cam2world,
                      pts3d=[p.reshape(-1, 3) for p in data.pts3d])
        assert d.pts3d[0].shape == (12, 16, 3)

    @pytest.mark.parametrize("field,value,match", [
        ("K", np.eye(3), r"K must have shape \(N, 3, 3\)"),
        ("K", np.stack([np.eye(3)] * 2), "K has 2 matrices for 3 images"),
        ("cam2world", np.stack([np.eye(4)] * 3) * np.nan, "cam2world contains non-finite"),
        ("cam2world", np.stack([np.diag([2.0, 2, 2, 1])] * 3), r"cam2world\[0\] is not a rigid"),
        ("pts3d", [np.zeros((5, 5, 3))] * 3, r"pts3d\[0\] must have shape"),
        ("masks", [np.ones((3, 3), bool)] * 3, r"masks\[0\] must have shape"),
        ("names", ["a", "a", "b"], "names must be unique"),
        ("names", ["../evil.png", "b", "c"], r"names\[0\]"),
        ("views_meta", [None, None], "views_meta has 2 entries for 3 images"),
        ("views_meta", [{"true_shape": [[5, 5]]}, None, None], r"views_meta\[0\]\['true_shape'\]"),
    ])
    def test_errors(self, data, field, value, match):
        kw = dict(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=data.pts3d)
        kw[field] = value
        with pytest.raises(ValueError, match=match):
            SceneData(**kw)

    def test_image_errors(self, data):
        with pytest.raises(ValueError, match=r"images\[0\] must hold colours"):
            SceneData(images=[im * 255 for im in data.images], K=data.K, cam2world=data.cam2world, pts3d=data.pts3d)
        with pytest.raises(ValueError, match="images is empty"):
            SceneData(images=[], K=np.zeros((0, 3, 3)), cam2world=np.zeros((0, 4, 4)), pts3d=[])
        K = data.K.copy()
        K[1, 0, 0] = -1
        with pytest.raises(ValueError, match="focal lengths must be positive"):
            SceneData(images=data.images, K=K, cam2world=data.cam2world, pts3d=data.pts3d)

    def test_exporters_require_scenedata(self, tmp_path):
        with pytest.raises(ValueError, match="export_ply: data must be a SceneData"):
            export_ply({"pts": 1}, tmp_path / "a.ply")

    def test_reassigned_names_checked(self, tmp_path):
        d = make_data()
        d.names = ["a.png", "b.png", "sub/c.png"]
        with pytest.raises(ValueError, match=r"names\[2\]"):
            export_colmap(d, tmp_path / "m")
        d.names = ["a.png", "b.png"]
        with pytest.raises(ValueError, match="names must be a list of 3"):
            export_cameras_json(d, tmp_path / "c.json")
        assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------------------
# fake aligner scenes following SparseSceneLike / DenseSceneLike (dust3r.export.scene_data)
# ------------------------------------------------------------------------------------------------
class _FakeBase:
    def __init__(self, src: SceneData, views_meta=None):
        import torch
        self.src = src
        self.imgs = [im.copy() for im in src.images]
        self.views_meta = views_meta
        self._torch = torch

    def get_im_poses(self):
        return self._torch.tensor(self.src.cam2world)

    def get_focals(self):
        return self._torch.tensor(self.src.K[:, 0, 0])

    def get_principal_points(self):
        return self._torch.tensor(self.src.K[:, :2, 2])


class FakeSparse(_FakeBase):
    """Like SparseGA: get_dense_pts3d -> flattened (H*W, 3) points, (H*W,) depths, (H, W) confs."""

    def get_intrinsics(self):
        return self._torch.tensor(self.src.K)

    def __init__(self, src, confs, views_meta=None):
        super().__init__(src, views_meta)
        self.confs = confs
        self.calls = []

    def get_dense_pts3d(self, clean_depth=True, subsample=8):
        self.calls.append((clean_depth, subsample))
        t = self._torch
        return ([t.tensor(p.reshape(-1, 3)) for p in self.src.pts3d],
                [t.tensor(d.reshape(-1)) for d in self.src.depths],
                [t.tensor(c) for c in self.confs])


class FakeDense(_FakeBase):
    """Like BasePCOptimizer: get_pts3d / get_masks with min_conf_thr, conf_trf = log, im_conf; no
    get_intrinsics (K from get_focals (N, 1) + get_principal_points)."""

    def __init__(self, src, confs, views_meta=None):
        super().__init__(src, views_meta)
        self.im_conf = [self._torch.tensor(c) for c in confs]
        self.min_conf_thr = 0.0
        self.cleaned = False

    def conf_trf(self, x):
        return self._torch.log(x)

    def get_pts3d(self):
        return [self._torch.tensor(p) for p in self.src.pts3d]

    def get_masks(self):
        return [c > self.min_conf_thr for c in self.im_conf]

    def get_depthmaps(self):
        return [self._torch.tensor(d) for d in self.src.depths]

    def get_focals(self):  # dense scenes return (N, 1)
        return self._torch.tensor(self.src.K[:, :1, 0])

    def clean_pointcloud(self):
        self.cleaned = True
        return self


class TestFromScene:
    def test_sparse(self, data):
        confs = [np.linspace(0, 3, d.size).reshape(d.shape).astype(np.float32) for d in data.depths]
        scene = FakeSparse(data, confs)
        out = SceneData.from_scene(scene, min_conf_thr=1.5, clean_depth=False, subsample=4)
        assert scene.calls == [(False, 4)]
        for m, c in zip(out.masks, confs):
            np.testing.assert_array_equal(m, c > 1.5)
        np.testing.assert_allclose(out.pts3d[1], data.pts3d[1])
        np.testing.assert_allclose(out.K, data.K)
        np.testing.assert_allclose(out.cam2world, data.cam2world)
        np.testing.assert_allclose(out.confs[2], confs[2])

    def test_dense_uses_conf_trf(self, data):
        rng = np.random.default_rng(3)
        confs = [1 + 4 * rng.random(d.shape).astype(np.float32) for d in data.depths]
        scene = FakeDense(data, confs)
        out = SceneData.from_scene(scene, min_conf_thr=3.0, clean_depth=True)
        assert scene.cleaned
        # as the original DUSt3R demo: raw im_conf compared with conf_trf(threshold)
        for m, c in zip(out.masks, confs):
            np.testing.assert_array_equal(m, c > np.float32(np.log(3.0)))
        # ... without setting the threshold on the caller's scene (the original demo did)
        assert scene.min_conf_thr == 0.0
        for c_scene, c in zip(scene.im_conf, confs):
            np.testing.assert_array_equal(c_scene.numpy(), c)

    def test_dense_focals_fallback_and_meta(self, photo_views, photo_data):
        confs = [np.full(d.shape, 5.0, np.float32) for d in photo_data.depths]
        scene = FakeDense(photo_data, confs, views_meta=photo_views)
        assert not hasattr(scene, "get_intrinsics")
        out = SceneData.from_scene(scene, min_conf_thr=3.0)
        K = photo_data.K.copy()
        K[:, 1, 1] = K[:, 0, 0]  # one focal per image (N, 1) -> fx = fy
        np.testing.assert_allclose(out.K, K)
        assert out.names == ["first.png", "second.jpg"] and out.has_original(1)

    def test_tsdf_through_the_scene(self, data, caplog):
        confs = [np.full(d.shape, 4.0, np.float32) for d in data.depths]
        # a scene without a TSDF option: skipped with a warning, the scene's own points are used
        scene = FakeSparse(data, confs)
        with caplog.at_level("WARNING"):
            out = SceneData.from_scene(scene, tsdf_thresh=0.1)
        assert "tsdf_thresh=0.1 ignored" in caplog.text and scene.calls == [(True, 8)]
        np.testing.assert_allclose(out.pts3d[0], data.pts3d[0])

        class FakeSparseTSDF(FakeSparse):  # like SparseGA: the scene refines its own depths
            def get_dense_pts3d(self, clean_depth=True, subsample=8, tsdf_thresh=0.0):
                pts, depths, cf = super().get_dense_pts3d(clean_depth, subsample)
                self.tsdf = tsdf_thresh
                return [p + tsdf_thresh for p in pts], depths, cf
        scene = FakeSparseTSDF(data, confs)
        out = SceneData.from_scene(scene, tsdf_thresh=0.25, clean_depth=False, subsample=4)
        assert scene.tsdf == 0.25 and scene.calls == [(False, 4)]
        np.testing.assert_allclose(out.pts3d[0], data.pts3d[0] + 0.25, atol=1e-5)

    def test_protocols(self, data):
        from dust3r.export import DenseSceneLike, SceneLike, SparseSceneLike
        confs = [np.ones(d.shape, np.float32) for d in data.depths]
        sparse, dense = FakeSparse(data, confs), FakeDense(data, confs)
        assert isinstance(sparse, SparseSceneLike) and not isinstance(sparse, DenseSceneLike)
        assert isinstance(dense, DenseSceneLike) and not isinstance(dense, SparseSceneLike)
        assert isinstance(sparse, SceneLike) and not isinstance(object(), SceneLike)

    def test_real_sparse_and_dense_scenes_follow_the_protocols(self):
        from dust3r.export import DenseSceneLike, SparseSceneLike
        from dust3r.cloud_opt.base_opt import BasePCOptimizer
        from mast3r.cloud_opt.scene import SparseGA
        for cls, proto in ((SparseGA, SparseSceneLike), (BasePCOptimizer, DenseSceneLike)):
            missing = [m for m in ("get_im_poses", "get_focals", *proto.__dict__) if not m.startswith("_")
                       and callable(getattr(proto, m, None)) and not hasattr(cls, m)]
            assert not missing, (cls, missing)

    def test_no_upward_import_in_source(self):
        """No module of dust3r.export imports mast3r, not even inside a function."""
        import ast
        import dust3r.export
        folder = os.path.dirname(dust3r.export.__file__)
        found = []
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                    found += [f"{name}:{node.lineno}" for m in mods if m.split(".")[0] == "mast3r"]
        assert not found

    def test_no_mast3r_import(self):
        """dust3r.export (TSDF option included) works with mast3r unimportable."""
        import subprocess
        import sys
        code = ("import sys; sys.modules['mast3r'] = None\n"
                "import numpy as np\n"
                "from dust3r.export import SceneData\n"
                "class S:\n"
                "    imgs = [np.zeros((2, 3, 3), np.float32)]\n"
                "    def get_im_poses(self): return np.eye(4)[None]\n"
                "    def get_focals(self): return np.array([2.0])\n"
                "    def get_dense_pts3d(self, clean_depth=True, subsample=8):\n"
                "        return [np.ones((6, 3))], [np.ones(6)], [np.full((2, 3), 5.0)]\n"
                "d = SceneData.from_scene(S(), tsdf_thresh=0.1)\n"
                "assert d.masks[0].all()\n"
                "assert not [m for m, v in sys.modules.items() if m.startswith('mast3r') and v is not None]\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr

    def test_not_a_scene(self):
        with pytest.raises(ValueError, match="get_dense_pts3d"):
            SceneData.from_scene(object())
        with pytest.raises(ValueError, match="scene is None"):
            SceneData.from_scene(None)


# ------------------------------------------------------------------------------------------------
class TestPLY:
    def test_round_trip(self, data, tmp_path):
        trimesh = pytest.importorskip("trimesh")
        masks = [np.ones(d.shape, bool) for d in data.depths]
        masks[0][:3] = False
        d = SceneData(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=data.pts3d, masks=masks)
        path = export_ply(d, tmp_path / "sub" / "cloud.ply")
        with open(path, "rb") as f:
            head = f.read(200)
        assert head.startswith(b"ply\nformat binary_little_endian 1.0\n")
        pc = trimesh.load(path)
        pts, cols = d.points_and_colors()
        assert len(pc.vertices) == len(pts) == sum(int(m.sum()) for m in masks)
        np.testing.assert_allclose(pc.vertices, pts, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(pc.colors)[:, :3], cols)
        assert not [f for f in os.listdir(tmp_path / "sub") if f != "cloud.ply"]  # no temp file left

    def test_subsample_and_errors(self, data, tmp_path):
        trimesh = pytest.importorskip("trimesh")
        path = export_ply(data, tmp_path / "c.ply", max_points=50)
        assert len(trimesh.load(path).vertices) == 50
        with pytest.raises(ValueError, match="max_points"):
            export_ply(data, tmp_path / "c.ply", max_points=-1)
        with pytest.raises(ValueError, match="is a folder"):
            export_ply(data, tmp_path)


# ------------------------------------------------------------------------------------------------
class TestGLB:
    def _geoms(self, path):
        import trimesh
        return trimesh.load(path, process=False).geometry

    def test_pointcloud(self, data, tmp_path):
        pytest.importorskip("trimesh")
        path = export_glb(data, tmp_path / "s.glb", as_pointcloud=True)
        g = self._geoms(path)
        pts, cols = data.points_and_colors()
        assert len(g["points"].vertices) == len(pts)
        np.testing.assert_array_equal(np.asarray(g["points"].colors)[:, :3], cols)
        assert {f"camera_{i:03d}" for i in range(3)} | {f"camera_{i:03d}_image" for i in range(3)} <= set(g)
        # orientation fix: world -> diag(-1,-1,1) @ world2cam[0]: a point of camera 0 keeps its depth as z
        T = np.diag([-1.0, -1, 1, 1]) @ np.linalg.inv(data.cam2world[0])
        expect = pts[:5].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        np.testing.assert_allclose(g["points"].vertices[:5], expect, atol=1e-5)
        np.testing.assert_allclose(expect[:, 2], data.depths[0].reshape(-1)[:5], atol=1e-4)
        # camera 0 frustum apex at the origin, far plane at +z
        cam0 = g["camera_000"].vertices
        assert np.abs(cam0).min(axis=0).max() < 1e-3 and cam0[:, 2].max() > 0

    def test_mesh_face_count(self, data, tmp_path):
        pytest.importorskip("trimesh")
        masks = [np.ones(d.shape, bool) for d in data.depths]
        masks[1][5, 7] = False  # removes the 6 triangles touching this interior pixel
        d = SceneData(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=data.pts3d, masks=masks)
        g = self._geoms(export_glb(d, tmp_path / "m.glb", as_pointcloud=False, transparent_cams=True))
        mesh = g["mesh"]
        n_tri = sum(2 * (h - 1) * (w - 1) for h, w in (m.shape for m in masks)) - 6
        assert len(mesh.faces) == 2 * n_tri  # double-sided
        assert len(mesh.vertices) == sum(int(m.sum()) for m in masks)
        assert not any(k.endswith("_image") for k in g)
        cols = np.asarray(mesh.visual.vertex_colors)[:, :3]
        np.testing.assert_array_equal(cols[:10], d.image_u8(0).reshape(-1, 3)[:10])

    def test_cam_size_and_errors(self, data, tmp_path):
        pytest.importorskip("trimesh")
        ext = []
        for size in (0.1, 0.4):
            g = self._geoms(export_glb(data, tmp_path / f"c{size}.glb", cam_size=size, transparent_cams=True))
            v = g["camera_000"].vertices
            ext.append(np.ptp(v[:, 0]))
        assert ext[1] / ext[0] == pytest.approx(4.0, rel=1e-3)
        assert ext[0] == pytest.approx(0.1, rel=0.05)  # far plane as wide as cam_size (+ ribbon width)
        with pytest.raises(ValueError, match="cam_size"):
            export_glb(data, tmp_path / "x.glb", cam_size=0)
        with pytest.raises(ValueError, match="cam_color has 2 colours for 3 cameras"):
            export_glb(data, tmp_path / "x.glb", cam_color=[(1, 0, 0), (0, 1, 0)])
        assert not (tmp_path / "x.glb").exists()


# ------------------------------------------------------------------------------------------------
def _check_model_against(data: SceneData, cams, images, points, original: bool, max_points=None):
    """Shared checks for our reader's output: cameras, poses, point colours, track reprojection."""
    assert len(cams) == len(images) == data.n
    n_obs = 0
    for i in range(data.n):
        K, w, h = data.camera(i, original)
        cam, im = cams[i + 1], images[i + 1]
        assert (cam.width, cam.height) == (w, h)
        np.testing.assert_allclose(cam.K(), opencv_to_colmap_intrinsics(K), atol=1e-9)
        np.testing.assert_allclose(im.world2cam(), data.world2cam[i], atol=1e-6)
        assert im.name == data.names[i]
        n_obs += len(im.point3D_ids)
    assert n_obs == len(points)
    if max_points is not None:
        assert len(points) <= max_points
    for pid, p in points.items():
        assert len(p.image_ids) == 1
        iid, k = int(p.image_ids[0]), int(p.point2D_idxs[0])
        im, cam = images[iid], cams[images[iid].camera_id]
        assert im.point3D_ids[k] == pid
        Xc = im.world2cam()[:3] @ np.append(p.xyz, 1)
        uv = (cam.K() @ Xc)[:2] / Xc[2]
        np.testing.assert_allclose(uv, im.xys[k], atol=1e-3)


class TestColmap:
    @pytest.mark.parametrize("binary", [True, False])
    def test_round_trip_own_reader(self, data, tmp_path, binary):
        out = export_colmap(data, tmp_path / "m", binary=binary, max_points=200)
        ext = ".bin" if binary else ".txt"
        assert sorted(os.listdir(out)) == sorted(f"{n}{ext}" for n in ("cameras", "images", "points3D"))
        cams, images, points = read_colmap_model(out)
        assert len(points) == 200
        _check_model_against(data, cams, images, points, original=True, max_points=200)
        # colours are those of the observed pixel
        for p in list(points.values())[:20]:
            i = int(p.image_ids[0]) - 1
            x, y = np.round(images[i + 1].xys[int(p.point2D_idxs[0])] - 0.5).astype(int)
            np.testing.assert_array_equal(p.rgb, data.image_u8(i)[y, x])

    @pytest.mark.parametrize("binary", [True, False])
    def test_pycolmap_reads(self, data, tmp_path, binary):
        pycolmap = pytest.importorskip("pycolmap")
        out = export_colmap(data, tmp_path / "m", binary=binary, max_points=None)
        rec = pycolmap.Reconstruction(out)
        assert rec.num_images() == 3 and rec.num_points3D() == sum(d.size for d in data.depths)
        for i in range(data.n):
            im = rec.images[i + 1]
            cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
            np.testing.assert_allclose(cfw.matrix(), data.world2cam[i][:3], atol=1e-6)
            K = rec.cameras[im.camera_id].calibration_matrix()
            np.testing.assert_allclose(K, opencv_to_colmap_intrinsics(data.K[i]), atol=1e-9)
            assert im.name == data.names[i]
        # track consistency through pycolmap's own projection
        for pid in list(rec.points3D.keys())[::97]:
            p = rec.points3D[pid]
            el = p.track.elements[0]
            im = rec.images[el.image_id]
            cfw = im.cam_from_world() if callable(im.cam_from_world) else im.cam_from_world
            uv = rec.cameras[im.camera_id].img_from_cam(cfw * p.xyz)
            np.testing.assert_allclose(uv, im.points2D[el.point2D_idx].xy, atol=1e-3)
            assert im.points2D[el.point2D_idx].point3D_id == pid

    def test_original_resolution_intrinsics(self, photo_data, tmp_path):
        out = export_colmap(photo_data, tmp_path / "m", binary=True, max_points=300)
        cams, images, points = read_colmap_model(out)
        K0 = hand_K_original(photo_data.K[0], 200, 150, 64, 48, 0, 0)
        K1 = hand_K_original(photo_data.K[1], 210, 150, 64, 46, 0, 7)
        for cid, K, size in ((1, K0, (200, 150)), (2, K1, (210, 150))):
            assert (cams[cid].width, cams[cid].height) == size
            np.testing.assert_allclose(cams[cid].K(), opencv_to_colmap_intrinsics(K), atol=1e-9)
        assert [images[1].name, images[2].name] == ["first.png", "second.jpg"]
        _check_model_against(photo_data, cams, images, points, original=True)
        # network-resolution variant
        out2 = export_colmap(photo_data, tmp_path / "n", original_resolution=False, max_points=100)
        cams2, images2, points2 = read_colmap_model(out2)
        assert (cams2[2].width, cams2[2].height) == (64, 32)
        _check_model_against(photo_data, cams2, images2, points2, original=False)

    def test_other_format_replaced(self, data, tmp_path):
        export_colmap(data, tmp_path / "m", binary=True, max_points=5)
        export_colmap(data, tmp_path / "m", binary=False, max_points=7)
        assert sorted(os.listdir(tmp_path / "m")) == ["cameras.txt", "images.txt", "points3D.txt"]
        assert len(read_colmap_model(tmp_path / "m")[2]) == 7

    def test_simple_pinhole(self, data, tmp_path):
        pycolmap = pytest.importorskip("pycolmap")
        sq = make_data()
        sq.K[:, 1, 1] = sq.K[:, 0, 0]
        out = export_colmap(sq, tmp_path / "m", camera_model="SIMPLE_PINHOLE", max_points=10, binary=False)
        cams, _, _ = read_colmap_model(out)
        assert cams[1].model == "SIMPLE_PINHOLE" and len(cams[1].params) == 3
        rec = pycolmap.Reconstruction(out)
        np.testing.assert_allclose(rec.cameras[1].calibration_matrix(), opencv_to_colmap_intrinsics(sq.K[0]))
        with pytest.raises(ValueError, match="camera_model"):
            export_colmap(data, tmp_path / "z", camera_model="OPENCV")

    def test_copies_images(self, photo_data, tmp_path):
        export_colmap(photo_data, tmp_path / "sparse", images_dir=tmp_path / "images", max_points=10)
        for name, size in (("first.png", (200, 150)), ("second.jpg", (210, 150))):
            with PIL.Image.open(tmp_path / "images" / name) as im:
                assert im.size == size

    def test_quaternions(self):
        rng = np.random.default_rng(0)
        q = rng.normal(size=(50, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        q[:, 0] = np.abs(q[:, 0])
        R = qvec_to_rotmat(q)
        np.testing.assert_allclose(rotmat_to_qvec(R), q, atol=1e-9)
        # 180-degree rotations (w = 0) stay accurate
        R180 = np.diag([1.0, -1, -1])
        np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(R180)), R180, atol=1e-12)

    def test_atomic_on_failure(self, data, tmp_path, monkeypatch):
        from dust3r.export import colmap as colmap_mod

        def boom(model, folder):
            with open(os.path.join(folder, "cameras.bin"), "wb") as f:
                f.write(b"partial")
            raise RuntimeError("disk full")
        monkeypatch.setattr(colmap_mod, "_write_binary", boom)
        with pytest.raises(RuntimeError, match="disk full"):
            export_colmap(data, tmp_path / "m")
        assert os.listdir(tmp_path / "m") == []

    def test_reader_errors(self, tmp_path):
        with pytest.raises(ValueError, match="is not a folder"):
            read_colmap_model(tmp_path / "nope")
        (tmp_path / "cameras.txt").write_text("1 PINHOLE 4 4 1 1 2 2\n")
        with pytest.raises(ValueError, match="incomplete"):
            read_colmap_model(tmp_path)


# ------------------------------------------------------------------------------------------------
class TestNerfstudio:
    def test_convention_and_files(self, data, tmp_path):
        path = export_nerfstudio(data, tmp_path / "ns", depth_format="png")
        meta = json.loads(open(path).read())
        assert meta["camera_model"] == "OPENCV" and len(meta["frames"]) == 3
        assert "fl_x" not in meta  # sizes differ between frames -> per-frame intrinsics only
        for i, fr in enumerate(meta["frames"]):
            c2w_gl = np.array(fr["transform_matrix"])
            np.testing.assert_allclose(c2w_gl[:, 0], data.cam2world[i][:, 0])
            np.testing.assert_allclose(c2w_gl[:, 1:3], -data.cam2world[i][:, 1:3])
            H, W = data.images[i].shape[:2]
            assert (fr["w"], fr["h"]) == (W, H)
            assert fr["fl_x"] == pytest.approx(data.K[i, 0, 0]) and fr["cx"] == pytest.approx(data.K[i, 0, 2] + 0.5)
            # a point 2 m in front of the OpenCV camera is at z = -2 in the nerfstudio camera frame
            X_world = data.cam2world[i] @ np.array([0.3, -0.2, 2.0, 1.0])
            X_ns = np.linalg.inv(c2w_gl) @ X_world
            np.testing.assert_allclose(X_ns[:3], [0.3, 0.2, -2.0], atol=1e-9)
            with PIL.Image.open(tmp_path / "ns" / fr["file_path"]) as im:
                np.testing.assert_array_equal(np.asarray(im), data.image_u8(i))
            with PIL.Image.open(tmp_path / "ns" / fr["depth_file_path"]) as im:
                depth_mm = np.asarray(im).astype(np.int64)
            np.testing.assert_array_equal(depth_mm, np.round(data.depths[i].astype(np.float64) * 1000))

    def test_shared_intrinsics_original_files(self, photo_views, tmp_path):
        views = [photo_views[0], dict(photo_views[0], filepath=photo_views[0]["filepath"])]
        d = make_data(shapes=((48, 64), (48, 64)), views_meta=views)
        d.K[1] = d.K[0]
        path = export_nerfstudio(d, tmp_path / "ns", depth_format="npy")
        meta = json.loads(open(path).read())
        K0 = hand_K_original(d.K[0], 200, 150, 64, 48, 0, 0)
        assert (meta["w"], meta["h"]) == (200, 150)
        assert meta["fl_x"] == pytest.approx(K0[0, 0]) and meta["cy"] == pytest.approx(K0[1, 2] + 0.5)
        assert [f["file_path"] for f in meta["frames"]] == ["images/first.png", "images/first_1.png"]
        depth = np.load(tmp_path / "ns" / meta["frames"][0]["depth_file_path"])
        assert depth.shape == (150, 200) and np.isfinite(depth).all()

    def test_exif_rotated_original_is_reencoded(self, tmp_path):
        img = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
        exif = img.getexif()
        exif[0x0112] = 6  # rotate 90 degrees on display
        src = tmp_path / "rot.jpg"
        img.save(src, exif=exif, quality=95)
        views = load_images([str(src)], size=64, verbose=False)
        assert tuple(views[0]["orig_shape"][0]) == (60, 40)  # H, W after EXIF transpose
        shape = tuple(int(s) for s in views[0]["true_shape"][0])
        d = make_data(shapes=(shape,), views_meta=views)
        meta = json.loads(open(export_nerfstudio(d, tmp_path / "ns")).read())
        assert (meta["w"], meta["h"]) == (40, 60)
        with PIL.Image.open(tmp_path / "ns" / "images" / "rot.jpg") as im:
            assert im.size == (40, 60) and int(im.getexif().get(0x0112, 1)) == 1

    def test_errors(self, data, tmp_path):
        with pytest.raises(ValueError, match="depth_format"):
            export_nerfstudio(data, tmp_path, depth_format="exr")
        (tmp_path / "file").write_text("x")
        with pytest.raises(ValueError, match="exists and is not a folder"):
            export_nerfstudio(data, tmp_path / "file")


# ------------------------------------------------------------------------------------------------
class TestCamerasJson:
    def test_schema(self, photo_data, tmp_path):
        path = export_cameras_json(photo_data, tmp_path / "cams.json")
        doc = json.loads(open(path).read())
        assert "OpenCV" in doc["convention"] and doc["num_images"] == 2
        e = doc["images"][1]
        assert set(e) >= {"name", "file", "width", "height", "K", "network_width", "network_height", "K_network",
                          "cam2world", "world2cam", "original_known", "resize"}
        assert e["name"] == "second.jpg" and e["file"].endswith("second.jpg") and e["original_known"]
        assert (e["width"], e["height"], e["network_width"], e["network_height"]) == (210, 150, 64, 32)
        np.testing.assert_allclose(e["K"], hand_K_original(photo_data.K[1], 210, 150, 64, 46, 0, 7), atol=1e-9)
        np.testing.assert_allclose(e["K_network"], photo_data.K[1])
        np.testing.assert_allclose(np.array(e["world2cam"]) @ np.array(e["cam2world"]), np.eye(4), atol=1e-9)
        assert e["resize"] == {"orig_shape": [150, 210], "resized_shape": [46, 64], "crop_offset": [0, 7]}

    def test_size_224_crop(self, tmp_path):
        """200x150 at size 224: resized to 299x224, centre-cropped to 224x224 at x0 = 37."""
        p = tmp_path / "wide.png"
        PIL.Image.fromarray(np.zeros((150, 200, 3), np.uint8)).save(p)
        views = load_images([str(p)], size=224, verbose=False)
        d = make_data(shapes=((224, 224),), views_meta=views)
        e = json.loads(open(export_cameras_json(d, tmp_path / "c.json")).read())["images"][0]
        np.testing.assert_allclose(e["K"], hand_K_original(d.K[0], 200, 150, 299, 224, 37, 0), atol=1e-9)
        assert (e["width"], e["height"]) == (200, 150)


# ------------------------------------------------------------------------------------------------
class TestDepthmaps:
    def test_original_resolution_mapping(self, photo_data, tmp_path):
        # replace the depth of image 1 (64x32 crop of a 64x46 resize of 210x150) by a column/row code
        H, W = photo_data.depths[1].shape
        code = (1 + 0.01 * np.arange(W)[None, :] + 0.1 * np.arange(H)[:, None]).astype(np.float32)
        depths = list(photo_data.depths)
        depths[1] = code
        masks = [np.ones(d.shape, bool) for d in depths]
        masks[1][0, 0] = False
        d = SceneData(images=photo_data.images, K=photo_data.K, cam2world=photo_data.cam2world,
                      pts3d=photo_data.pts3d, masks=masks, confs=photo_data.confs, depths=depths,
                      views_meta=photo_data.views_meta)
        out = export_depthmaps(d, tmp_path / "dm")
        assert len(out["depth_npy"]) == len(out["depth_png"]) == len(out["conf_npy"]) == 2
        dep = np.load(out["depth_npy"][1])
        assert dep.shape == (150, 210)
        # original row v -> network row round((v + 0.5) * 46 / 150 - 0.5 - 7); column likewise without crop
        v = np.arange(150)
        u = np.arange(210)
        y = (v + 0.5) * 46 / 150 - 0.5 - 7
        x = (u + 0.5) * 64 / 210 - 0.5
        iy, ix = np.floor(y + 0.5).astype(int), np.floor(x + 0.5).astype(int)
        inside = (iy >= 0) & (iy < H)
        assert inside.sum() < 150  # rows cropped away exist
        assert np.isnan(dep[~inside]).all()
        expect = code[iy[inside]][:, ix]
        expect[(iy[inside] == 0)[:, None] & (ix == 0)[None, :]] = np.nan  # masked pixel
        np.testing.assert_array_equal(dep[inside], expect)
        with PIL.Image.open(out["depth_png"][1]) as im:
            png = np.asarray(im).astype(np.int64)
        np.testing.assert_array_equal(png, np.where(np.isnan(dep), 0, np.round(np.nan_to_num(dep) * 1000)))
        conf = np.load(out["conf_npy"][1])
        assert conf.shape == (150, 210) and np.isnan(conf[~inside]).all() and np.isfinite(conf[inside]).all()

    def test_bilinear_and_network(self, photo_data, tmp_path):
        out = export_depthmaps(photo_data, tmp_path / "a", interpolation="bilinear", depth_formats=("npy",))
        dep = np.load(out["depth_npy"][0])
        lo, hi = np.nanmin(photo_data.depths[0]), np.nanmax(photo_data.depths[0])
        assert dep.shape == (150, 200) and np.isfinite(dep).all() and lo <= dep.min() and dep.max() <= hi
        out = export_depthmaps(photo_data, tmp_path / "b", original_resolution=False, depth_formats="npy")
        np.testing.assert_array_equal(np.load(out["depth_npy"][1]), photo_data.depths[1])
        with pytest.raises(ValueError, match="depth_formats"):
            export_depthmaps(photo_data, tmp_path / "c", depth_formats=("exr",))
        with pytest.raises(ValueError, match="interpolation"):
            export_depthmaps(photo_data, tmp_path / "c", interpolation="cubic")


# ------------------------------------------------------------------------------------------------
class TestExportAll:
    def test_everything(self, photo_views, tmp_path):
        pytest.importorskip("trimesh")
        shapes = [tuple(int(s) for s in v["true_shape"][0]) for v in photo_views]
        src = make_data(shapes=shapes, views_meta=photo_views)
        confs = [np.full(s, 4.0, np.float32) for s in shapes]
        confs[0][:10] = 1.0
        scene = FakeSparse(src, confs, views_meta=photo_views)
        out = export_all(scene, tmp_path / "out", formats=("glb", "ply", "colmap", "nerfstudio", "cameras", "depth"),
                         min_conf_thr=1.5, cam_size=0.2, max_points=500, binary=False)
        assert set(out) == {"glb", "ply", "colmap", "colmap_zip", "nerfstudio", "cameras", "depth"}
        for p in out.values():
            assert os.path.exists(p) and os.path.abspath(p).startswith(str(tmp_path / "out"))
        with zipfile.ZipFile(out["colmap_zip"]) as zf:
            names = set(zf.namelist())
        assert {"colmap/sparse/0/cameras.txt", "colmap/sparse/0/images.txt", "colmap/sparse/0/points3D.txt",
                "colmap/images/first.png", "colmap/images/second.jpg"} <= names
        cams, images, points = read_colmap_model(out["colmap"])
        assert len(points) == 500 and cams[1].width == 200
        assert len(read_colmap_model(tmp_path / "out" / "colmap")[2]) == 500  # finds sparse/0 by itself
        np.testing.assert_allclose(images[2].rotation_matrix(), src.world2cam[1][:3, :3], atol=1e-9)
        import trimesh
        assert len(trimesh.load(out["ply"]).vertices) == 500  # max_points applies to every exporter taking it

    def test_per_format_options(self, data, tmp_path):
        pytest.importorskip("trimesh")
        import trimesh
        out = export_all(data, tmp_path, formats=("ply", "colmap"), colmap_max_points=40, colmap_images=False,
                         colmap_zip=False)
        assert len(trimesh.load(out["ply"]).vertices) == sum(d.size for d in data.depths)
        assert len(read_colmap_model(out["colmap"])[2]) == 40
        assert "colmap_zip" not in out and not (tmp_path / "colmap" / "images").exists()

    def test_bad_arguments(self, data, tmp_path):
        with pytest.raises(ValueError, match="formats must be"):
            export_all(data, tmp_path, formats=("obj",))
        with pytest.raises(TypeError, match="as_pointclod"):
            export_all(data, tmp_path, as_pointclod=True)


# ------------------------------------------------------------------------------------------------
class TestReliability:
    """File modes, all-or-nothing export_all, refusal of non-finite inputs."""

    @pytest.fixture
    def umask(self):
        def set_mask(mask):
            os.umask(mask)
        old = os.umask(0o022)
        yield set_mask
        os.umask(old)

    @staticmethod
    def _modes(root):
        out = {}
        for base, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(base, n)
                out[os.path.relpath(p, root)] = (os.path.isdir(p), os.stat(p).st_mode & 0o777)
        return out

    @pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
    def test_modes_follow_umask(self, data, tmp_path, umask, mask, file_mode, dir_mode):
        pytest.importorskip("trimesh")
        umask(mask)
        export_all(data, tmp_path / "out", formats=("glb", "ply", "colmap", "nerfstudio", "cameras", "depth"))
        export_ply(data, tmp_path / "single.ply")
        modes = self._modes(tmp_path)
        assert len(modes) > 20
        wrong = {p: oct(m) for p, (is_dir, m) in modes.items() if m != (dir_mode if is_dir else file_mode)}
        assert not wrong

    def test_file_in_the_way_leaves_nothing(self, data, tmp_path):
        out = tmp_path / "out"
        out.mkdir()
        (out / "colmap").write_text("mine")
        with pytest.raises(ValueError, match="colmap"):
            export_all(data, out, formats=("glb", "ply", "colmap", "cameras"))
        assert sorted(os.listdir(out)) == ["colmap"] and (out / "colmap").read_text() == "mine"

    def test_failing_format_leaves_nothing(self, data, tmp_path, monkeypatch):
        pytest.importorskip("trimesh")
        import dust3r.export as ex
        out = tmp_path / "out"
        out.mkdir()
        (out / "scene.ply").write_bytes(b"old run")

        def broken(*a, **k):
            raise RuntimeError("disk full")
        monkeypatch.setitem(ex._EXPORTERS, "cameras", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            export_all(data, out, formats=("glb", "ply", "colmap", "cameras"))
        # nothing new, no staging folder, the earlier file untouched
        assert sorted(os.listdir(out)) == ["scene.ply"] and (out / "scene.ply").read_bytes() == b"old run"

    def test_rerun_replaces_entries_whole(self, data, tmp_path):
        out = tmp_path / "out"
        export_all(data, out, formats=("colmap", "cameras"), binary=False)
        (out / "colmap" / "images" / "stale.png").write_bytes(b"x")
        (out / "notes.txt").write_text("keep me")
        res = export_all(data, out, formats=("colmap", "cameras"), binary=True)
        model = sorted(os.listdir(out / "colmap" / "sparse" / "0"))
        assert model == ["cameras.bin", "images.bin", "points3D.bin"]
        assert not (out / "colmap" / "images" / "stale.png").exists()
        assert (out / "notes.txt").read_text() == "keep me"
        assert sorted(os.listdir(out)) == ["cameras.json", "colmap", "colmap.zip", "notes.txt"]
        assert res["colmap"] == str(out / "colmap" / "sparse" / "0") and len(read_colmap_model(res["colmap"])[1]) == 3
        with zipfile.ZipFile(res["colmap_zip"]) as zf:
            assert not [n for n in zf.namelist() if n.endswith((".txt", "stale.png"))]

    def test_non_finite_points_under_mask_refused(self, data):
        pts = [p.copy() for p in data.pts3d]
        pts[1][2, 3, 0] = np.inf
        masks = [np.ones(d.shape, bool) for d in data.depths]
        with pytest.raises(ValueError, match=r"pts3d\[1\] has 1 non-finite point"):
            SceneData(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=pts, masks=masks)
        masks[1][2, 3] = False  # masked out: fine
        d = SceneData(images=data.images, K=data.K, cam2world=data.cam2world, pts3d=pts, masks=masks)
        assert d.masks[1].sum() == d.masks[1].size - 1

    @pytest.mark.parametrize("field,index,match", [
        ("K", (1, 0, 2), "K contains non-finite"),
        ("cam2world", (0, 1, 3), "cam2world contains non-finite"),
        ("pts3d", (0, 4, 5, 1), r"pts3d\[0\] has 1 non-finite"),
    ])
    @pytest.mark.parametrize("exporter", ["ply", "colmap", "cameras", "all"])
    def test_exporters_refuse_non_finite_after_edit(self, field, index, match, exporter, tmp_path):
        d = make_data()
        arr = getattr(d, field)
        if field == "pts3d":
            arr[index[0]][index[1:]] = np.nan
        else:
            arr[index] = np.nan
        call = {"ply": lambda: export_ply(d, tmp_path / "o" / "a.ply"),
                "colmap": lambda: export_colmap(d, tmp_path / "o"),
                "cameras": lambda: export_cameras_json(d, tmp_path / "o" / "c.json"),
                "all": lambda: export_all(d, tmp_path / "o", formats=("ply", "colmap", "cameras"))}[exporter]
        with pytest.raises(ValueError, match=match):
            call()
        assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")

    def test_common_names_still_importable(self):
        from dust3r.export import _common
        from dust3r.export.scene_data import SceneData as SD
        assert _common.SceneData is SD and callable(_common.atomic_file) and callable(_common.staged_dir)
        assert _common.META_KEYS == ("orig_shape", "resized_shape", "crop_offset", "resize_scale", "filepath",
                                     "true_shape", "instance")

    def test_single_format_registry(self):
        import dust3r.export as ex
        assert ex.ALL_FORMATS == ("glb", "ply", "colmap", "nerfstudio", "cameras", "depth")
        assert set(ex.DEFAULT_FORMATS) < set(ex.ALL_FORMATS) and set(ex.EXPORT_OUTPUTS) == set(ex.ALL_FORMATS)
        assert ex.OUTPUT_NAMES == ("scene.glb", "scene.ply", "colmap", "colmap.zip", "nerfstudio", "cameras.json",
                                   "depth")

