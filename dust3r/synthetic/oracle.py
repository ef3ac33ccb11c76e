"""An "oracle" model: the forward interface of ``AsymmetricMASt3R`` answering with ground truth.

:class:`OracleModel` wraps a :class:`dust3r.synthetic.SyntheticScene`. Given two batches of views of that scene
(recognised by their image content, at the render size or uniformly resized), it returns the exact pointmaps in
camera-1 frame, high confidences, and descriptors that identify 3D points, so that every stage after the network
(``dust3r.inference``, ``mast3r.fast_nn`` matching, dense and sparse global alignment, PnP, exports) can be
tested end to end against known answers, without weights. Noise, per-pair scale (DUSt3R-like) and low
descriptor confidence on non-covisible pixels are options.

Testing your own pipeline (here DUSt3R's dense global alignment; put yours in its place — the same model also
drives MASt3R's sparse alignment and matching, which take any model with this forward interface)::

    from dust3r.cloud_opt import GlobalAlignerMode, global_aligner
    from dust3r.image_pairs import make_pairs
    from dust3r.inference import inference
    from dust3r.synthetic import OracleModel, make_scene
    from dust3r.utils.pose_metrics import pose_errors

    scene = make_scene(n_views=3, height=96, width=128, seed=0)
    model = OracleModel(scene)                     # use it wherever an AsymmetricMASt3R goes
    views = scene.views()                          # or load_images(scene.save_images(folder), size=128)
    pairs = make_pairs(views, scene_graph="complete", symmetrize=True)
    output = inference(pairs, model, "cpu", batch_size=1, verbose=False)
    aligner = global_aligner(output, "cpu", mode=GlobalAlignerMode.PointCloudOptimizer, verbose=False)
    aligner.compute_global_alignment(init="mst", niter=300, schedule="cosine", lr=0.01)
    err = pose_errors(aligner.get_im_poses().detach(), scene.cam2world)
    assert err["rot_deg"] < 0.5                    # exact inputs: any error is the pipeline's own

Load the saved PNGs with ``load_images(paths, size=W)`` (W and H multiples of 16, W >= H) so that they are not
cropped: the oracle answers for resized inputs but not for cropped ones.
"""
from __future__ import annotations

import zlib
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .render import cast_rays
from .scene import SyntheticScene, _check_int, _check_positive

__all__ = ["OracleModel"]


class _PatchEmbedShim:
    """Stands in for ``model.patch_embed`` where callers only read ``patch_size``."""

    def __init__(self, patch_size: Tuple[int, int] = (16, 16)):
        self.patch_size = patch_size


def _resize(imgs: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) -> (B, 3, *size), antialiased bilinear (identity when the size matches)."""
    if tuple(imgs.shape[-2:]) == tuple(size):
        return imgs
    return F.interpolate(imgs, size=size, mode="bilinear", antialias=True, align_corners=False)


def _thumb_size(h: int, w: int, side: int = 32) -> Tuple[int, int]:
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _pair_seed(seed: int, i: int, j: int) -> int:
    return zlib.crc32(f"oracle-noise:{seed}:{i}:{j}".encode())


class OracleModel(torch.nn.Module):
    """A stand-in for ``AsymmetricMASt3R`` that returns ground truth.

    ``model(view1, view2)`` identifies the scene view shown in each input image by its content (mean absolute
    difference to the scene's renderings, resized to the input size if needed) and returns, for each batch
    element b with views (i, j):

    * ``pred1['pts3d']`` (B, h, w, 3): points of view i in camera i's frame;
    * ``pred2['pts3d_in_other_view']`` (B, h, w, 3): points of view j in camera i's frame;
    * ``conf`` (B, h, w) > 1 (``conf`` argument, lowered when ``noise_std > 0``); ``desc_conf`` likewise;
    * ``desc`` (B, h, w, D): unit-norm random Fourier features of the pixel's *world* point,
      ``[cos(w_k . X), sin(w_k . X)]_k / sqrt(D/2)`` with D/2 frequency vectors of random directions and
      wavelengths log-spaced from ``~5`` pixel footprints up to the scene size. The dot product of two
      descriptors is ``mean_k cos(w_k . (X - Y))``: 1 for the same 3D point and decreasing away from it, so the
      same surface point seen in two views has the same descriptor and reciprocal nearest neighbours
      (``fast_reciprocal_NNs(dist='dot')``) land on true correspondences.

    Inputs at a resolution (h, w) other than the render's (H, W) (e.g. ``load_images`` resized the PNGs) are
    answered by re-casting the rays of the network pixels through the scene (exact ground truth for
    ``K_net = diag(w/W, h/H) K`` in the pixel-centre convention), when the scene holds its ``objects``; for a
    scene object without them, the stored maps are resized with nearest neighbour (error up to half a render
    pixel). Cropped inputs are not supported (the image match fails with a ValueError).

    Args:
        scene: a :class:`SyntheticScene`.
        noise_std: Gaussian noise on the returned points, std ``noise_std * depth`` (relative, e.g. 0.01 = 1 %),
            drawn from a generator seeded by ``(seed, i, j)``: the same pair always gets the same noise.
        desc_dim: descriptor dimension D (even, >= 2; 24 like MASt3R).
        seed: seed of the descriptor frequencies and the noise.
        two_confs: also return ``desc_conf`` (as MASt3R with two confidence channels).
        conf: confidence of noise-free outputs (> 1); with noise it becomes ``1 + (conf - 1) / (1 + 100 noise_std)``.
        match_tol: mean absolute image difference (images in [-1, 1]) under which an input is taken to be a
            rendering (exact copies; see :meth:`identify`).
        thumb_tol: the same at thumbnail size, for resampled / compressed copies.
        lookup: ``'image'`` (default, by content) or ``'idx'`` (trust ``view['idx']`` as the scene index).
        scale_per_pair: multiply both pointmaps of each pair by a scale drawn log-uniformly in [0.5, 2] from
            ``(seed, i, j)``, mimicking the per-pair scale ambiguity of DUSt3R (default False: metric, like MASt3R).
        hidden_desc_conf: ``desc_conf`` of the pixels whose surface point the other view of the pair does not see
            (out of view or occluded), as a trained MASt3R reports low descriptor confidence there (its
            ``desc_conf`` is ``exp(x)``, so it may be below 1). ``None`` keeps a uniform ``desc_conf``. Without
            it, matches between parts of two views that do not overlap come with full confidence and mislead the
            sparse alignment of large, wide-baseline scenes.

    Attributes mirroring AsymmetricMASt3R: ``patch_embed.patch_size == (16, 16)``, ``patch_size = 16``,
    ``desc_mode='norm'``, ``two_confs``, ``output_mode='pts3d+desc{D}'``, ``head_type='oracle'``. It has no
    ``_encode_image`` / ``_decoder`` / ``_downstream_head``, so ``dust3r.inference.inference`` calls its
    plain forward.
    """

    def __init__(self, scene: SyntheticScene, noise_std: float = 0.0, desc_dim: int = 24, seed: int = 0,
                 two_confs: bool = True, conf: float = 10.0, match_tol: float = 0.02, thumb_tol: float = 0.04,
                 lookup: str = "image", scale_per_pair: bool = False,
                 hidden_desc_conf: Optional[float] = 0.1) -> None:
        super().__init__()
        for name in ("images", "pts3d", "cam2world", "K"):
            if not hasattr(scene, name):
                raise ValueError(f"OracleModel needs a SyntheticScene (missing {name!r} on {type(scene).__name__})")
        pts_world = np.asarray(scene.pts3d, dtype=np.float64)
        if pts_world.ndim != 4 or pts_world.shape[-1] != 3 or not np.isfinite(pts_world).all():
            raise ValueError(f"scene.pts3d must be a finite (N, H, W, 3) array, got shape {pts_world.shape}")
        N, H, W = pts_world.shape[:3]
        if np.asarray(scene.images).shape != (N, H, W, 3):
            raise ValueError(f"scene.images must have shape {(N, H, W, 3)}, got {np.asarray(scene.images).shape}")
        desc_dim = _check_int(desc_dim, "desc_dim", 2)
        if desc_dim % 2:
            raise ValueError(f"desc_dim must be even (cos/sin pairs), got {desc_dim}")
        self.noise_std = _check_positive(noise_std, "noise_std", allow_zero=True)
        conf = _check_positive(conf, "conf")
        if conf <= 1:
            raise ValueError(f"conf must be > 1 (MASt3R confidences are 1 + exp(x)), got {conf}")
        self.match_tol = _check_positive(match_tol, "match_tol")
        self.thumb_tol = _check_positive(thumb_tol, "thumb_tol")
        if lookup not in ("image", "idx"):
            raise ValueError(f"lookup must be 'image' or 'idx', got {lookup!r}")

        self.scene = scene
        self.n_views, self.height, self.width = N, H, W
        self.desc_dim, self.seed, self.two_confs, self.lookup = desc_dim, int(seed), bool(two_confs), lookup
        self.scale_per_pair = bool(scale_per_pair)
        if hidden_desc_conf is not None:
            hidden_desc_conf = _check_positive(hidden_desc_conf, "hidden_desc_conf")
        self.hidden_desc_conf = hidden_desc_conf
        self._covisible_cache: Dict[Tuple[int, int, int, int], torch.Tensor] = {}
        self.conf_value = 1.0 + (conf - 1.0) / (1.0 + 100.0 * self.noise_std)
        # attributes pipelines may read on a real model
        self.patch_embed = _PatchEmbedShim((16, 16))
        self.patch_size = 16
        self.desc_mode = "norm"
        self.output_mode = f"pts3d+desc{desc_dim}"
        self.head_type = "oracle"

        cam2world = np.asarray(scene.cam2world, dtype=np.float64)
        self.frequencies = self._frequencies(pts_world, cam2world, np.asarray(scene.K, dtype=np.float64))
        from dust3r.utils.image import ImgNorm

        import PIL.Image

        imgs = torch.stack([ImgNorm(PIL.Image.fromarray(np.asarray(im, dtype=np.uint8))) for im in scene.images])
        self.register_buffer("images", imgs, persistent=False)  # (N, 3, H, W) in [-1, 1]
        self.register_buffer("world2cam", torch.from_numpy(np.linalg.inv(cam2world)), persistent=False)
        # per-resolution ground truth: {(h, w): world points (N, h, w, 3) float64}; the render size is exact
        self._gt_cache: Dict[Tuple[int, int], torch.Tensor] = {(H, W): torch.from_numpy(pts_world)}
        self._img_cache: Dict[Tuple[int, int], torch.Tensor] = {}
        # so that next(model.parameters()) works for callers that read the device / dtype from it
        self._device_anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    # ---------------------------------------------------------------- descriptors
    def _frequencies(self, pts_world: np.ndarray, cam2world: np.ndarray, K: np.ndarray) -> np.ndarray:
        """(D/2, 3) frequency vectors, radians per metre."""
        n_freq = self.desc_dim // 2
        world2cam = np.linalg.inv(cam2world)
        depth = np.einsum("nj,nhwj->nhw", world2cam[:, 2, :3], pts_world) + world2cam[:, None, None, 2, 3]
        footprint = float(np.median(depth)) / float(np.median(K[:, 0, 0]))
        extent = float(np.ptp(pts_world.reshape(-1, 3), axis=0).max())
        lam_min, lam_max = 5.0 * footprint, max(extent, 20.0 * footprint)
        rng = np.random.default_rng([self.seed, 4242])
        dirs = rng.normal(size=(n_freq, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wavelengths = np.geomspace(lam_min, lam_max, n_freq) if n_freq > 1 else np.array([lam_min])
        return dirs * (2.0 * np.pi / wavelengths)[:, None]

    def descriptors(self, pts_world: torch.Tensor) -> torch.Tensor:
        """(..., D) float32 unit descriptors of world points (..., 3)."""
        freqs = torch.as_tensor(self.frequencies, dtype=torch.float32, device=pts_world.device)
        pts = pts_world.to(torch.float32)
        # three broadcast products instead of a (P, 3) @ (3, D/2) matmul (faster for this skinny shape)
        phase = pts[..., 0:1] * freqs[:, 0] + pts[..., 1:2] * freqs[:, 1] + pts[..., 2:3] * freqs[:, 2]
        return torch.cat([phase.cos(), phase.sin()], dim=-1) * float(1.0 / np.sqrt(self.desc_dim // 2))

    # ---------------------------------------------------------------- per-resolution ground truth
    def _gt_world(self, h: int, w: int) -> torch.Tensor:
        """(N, h, w, 3) float64 world points seen through the pixel centres of an (h, w) image of each view."""
        key = (h, w)
        if key not in self._gt_cache:
            objects = getattr(self.scene, "objects", None)
            H, W = self.height, self.width
            if objects:
                sx, sy = w / W, h / H
                # pixel centres: x_net + 0.5 = sx * (x + 0.5)
                scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
                pts = [cast_rays(scale @ np.asarray(self.scene.K[n], np.float64), np.asarray(self.scene.cam2world[n]),
                             w, h, objects)[1] for n in range(self.n_views)]
                self._gt_cache[key] = torch.from_numpy(np.stack(pts))
            else:
                # nearest render pixel of each network pixel centre (ties rounded up)
                cols = np.clip(np.floor((np.arange(w) + 0.5) * W / w), 0, W - 1).astype(np.int64)
                rows = np.clip(np.floor((np.arange(h) + 0.5) * H / h), 0, H - 1).astype(np.int64)
                self._gt_cache[key] = self._gt_cache[(H, W)][:, rows][:, :, cols]
        return self._gt_cache[key]

    def _stored_images(self, h: int, w: int) -> torch.Tensor:
        """(N, 3, h, w) renderings resized (antialiased bilinear) to an input size."""
        if (h, w) == (self.height, self.width):
            return self.images
        if (h, w) not in self._img_cache:
            self._img_cache[(h, w)] = _resize(self.images, (h, w))
        return self._img_cache[(h, w)]

    # ---------------------------------------------------------------- view lookup
    def identify(self, img: torch.Tensor, name: str = "img") -> torch.Tensor:
        """(B,) long scene indices of a batch of images (B, 3, h, w) in [-1, 1].

        The candidate is the rendering (resized to (h, w)) with the smallest mean absolute difference; it is
        accepted when that difference is below ``match_tol`` (exact copies, PNG round trips) or when the two
        images agree within ``thumb_tol`` at thumbnail size (32 px long side; resampled or JPEG-compressed
        copies, whose fine texture differs). Raises ValueError otherwise.
        """
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{name} must be a (B, 3, h, w) image tensor, got "
                             f"{tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__}")
        h, w = img.shape[-2:]
        if abs(w * self.height - h * self.width) > max(self.height, self.width):
            raise ValueError(f"OracleModel: {name} is {w}x{h}, not a uniform resize of the {self.width}x"
                             f"{self.height} renderings (cropped inputs are not supported: load the saved images "
                             "with a size that keeps their aspect ratio, e.g. size=W with W, H multiples of 16)")
        stored = self._stored_images(h, w)
        img = img.detach().to(stored.device, torch.float32)
        thumb_size = _thumb_size(h, w)
        thumbs = self._stored_images(*thumb_size)
        # shortlist by thumbnail (cheap, memory B x N x 3 x 32 x 32), decide at full resolution
        thumb_all = (_resize(img, thumb_size)[:, None] - thumbs[None]).abs().mean(dim=(2, 3, 4))  # (B, N)
        cand = thumb_all.topk(min(4, self.n_views), dim=1, largest=False).indices  # (B, k)
        full = torch.stack([(img - stored[cand[:, k]]).abs().mean(dim=(1, 2, 3)) for k in range(cand.shape[1])], 1)
        best, pick = full.min(dim=1)
        idx = cand.gather(1, pick[:, None])[:, 0]
        thumb_diff = thumb_all.gather(1, idx[:, None])[:, 0]
        bad = torch.nonzero((best > self.match_tol) & (thumb_diff > self.thumb_tol)).flatten().tolist()
        if bad:
            raise ValueError(f"OracleModel: {name} image(s) {bad} match none of the scene's {self.n_views} renderings "
                             f"(mean abs difference {best[bad].tolist()} > match_tol={self.match_tol}, at thumbnail "
                             f"size {thumb_diff[bad].tolist()} > thumb_tol={self.thumb_tol}); the oracle only "
                             "answers for images of its own scene, unresized or uniformly resized, not cropped")
        return idx.cpu()

    def _indices(self, view: Dict[str, Any], B: int, name: str) -> torch.Tensor:
        if self.lookup == "image":
            return self.identify(view["img"], f"{name}['img']")
        value = view.get("idx")
        values = value.reshape(-1).tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else (
            list(value) if isinstance(value, (list, tuple)) else [value])
        try:
            ints = [int(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"{name}['idx'] = {value!r} is not a (list of) integer view indices") from None
        if len(ints) != B or any(not 0 <= k < self.n_views for k in ints):
            raise ValueError(f"{name}['idx'] = {ints} is not {B} view indices in [0, {self.n_views})")
        return torch.tensor(ints, dtype=torch.long)

    def covisible(self, i: int, j: int, h: int, w: int) -> torch.Tensor:
        """(h, w) bool: pixels of view ``i`` (at input size h x w) whose surface point view ``j`` sees.

        Computed at the render size with :meth:`SyntheticScene.correspondences` and resized with nearest
        neighbour; cached per (i, j, h, w).
        """
        key = (i, j, h, w)
        if key not in self._covisible_cache:
            seen = torch.from_numpy(np.asarray(self.scene.correspondences(i, j)[1], dtype=bool))
            if tuple(seen.shape) != (h, w):
                seen = torch.nn.functional.interpolate(seen[None, None].float(), size=(h, w))[0, 0] > 0.5
            self._covisible_cache[key] = seen
        return self._covisible_cache[key]

    # ---------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, view1: Dict[str, Any], view2: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor],
                                                                             Dict[str, torch.Tensor]]:
        """Ground-truth predictions for a batch of pairs.

        Args:
            view1, view2: batched view dicts with ``img`` (B, 3, h, w) images of the scene (any of its views, in
                any order, at the render size or uniformly resized).

        Returns:
            ``(pred1, pred2)`` float32 on the device of ``view1['img']``: pred1 = {pts3d (B, h, w, 3) view-1
            points in camera-1 frame, conf (B, h, w), desc (B, h, w, D), desc_conf (B, h, w)}; pred2 =
            {pts3d_in_other_view (B, h, w, 3) view-2 points in camera-1 frame, conf, desc, desc_conf}.
        """
        for name, view in (("view1", view1), ("view2", view2)):
            if not isinstance(view, dict) or "img" not in view:
                raise ValueError(f"{name} must be a view dict with an 'img' tensor")
        B = view1["img"].shape[0]
        if view2["img"].shape[0] != B:
            raise ValueError(f"view1 and view2 have different batch sizes: {B} != {view2['img'].shape[0]}")
        device = view1["img"].device
        i, j = self._indices(view1, B, "view1"), self._indices(view2, B, "view2")
        world1 = self._gt_world(*view1["img"].shape[-2:])[i]  # (B, h1, w1, 3)
        world2 = self._gt_world(*view2["img"].shape[-2:])[j]
        world2cam1 = self.world2cam[i].to(torch.float64).cpu()
        rot, trans = world2cam1[:, :3, :3], world2cam1[:, None, None, :3, 3]
        pts1_cam1 = torch.einsum("bij,bhwj->bhwi", rot, world1) + trans
        pts2_cam1 = torch.einsum("bij,bhwj->bhwi", rot, world2) + trans
        if self.noise_std > 0 or self.scale_per_pair:
            for b in range(B):  # a few pairs per batch; the per-pixel work stays vectorised
                gen = torch.Generator().manual_seed(_pair_seed(self.seed, int(i[b]), int(j[b])))
                log_scale = torch.empty((), dtype=torch.float64).uniform_(np.log(0.5), np.log(2.0), generator=gen)
                scale = float(log_scale.exp())
                for pts in (pts1_cam1, pts2_cam1):
                    if self.noise_std > 0:
                        eps = torch.randn(pts.shape[1:], generator=gen, dtype=torch.float64)
                        pts[b] += eps * self.noise_std * pts[b, ..., 2:3].abs()
                    if self.scale_per_pair:
                        pts[b] *= scale

        def _heads(pts: torch.Tensor, world: torch.Tensor, own: torch.Tensor, other: torch.Tensor
                   ) -> Dict[str, torch.Tensor]:
            conf = torch.full(pts.shape[:3], self.conf_value, dtype=torch.float32)
            out = {"conf": conf, "desc": self.descriptors(world)}
            if self.two_confs:
                desc_conf = conf.clone()
                if self.hidden_desc_conf is not None:
                    seen = torch.stack([self.covisible(int(a), int(b), *pts.shape[1:3]) for a, b in zip(own, other)])
                    desc_conf[~seen] = self.hidden_desc_conf
                out["desc_conf"] = desc_conf
            return out

        pred1 = {"pts3d": pts1_cam1.to(torch.float32), **_heads(pts1_cam1, world1, i, j)}
        pred2 = {"pts3d_in_other_view": pts2_cam1.to(torch.float32), **_heads(pts2_cam1, world2, j, i)}
        return ({k: v.to(device) for k, v in pred1.items()}, {k: v.to(device) for k, v in pred2.items()})
