"""MASt3R localization core: query vs map-image matching, lifting map matches to 3D, PnP.

A query is matched against each of its retrieved map images (views of :mod:`dust3r_visloc.datasets`):

* coarse: one forward pass per (query, map) pair at the network resolution (the pairs of a query share one
  inference call, so the query is encoded once), reciprocal nearest neighbours of the descriptors seeded at
  the map pixels with a 3D point (``fast_reciprocal_NNs(..., pixel_tol)``), matches moved to original pixels;
* coarse-to-fine (images larger than the network input): coarse matches at low resolution choose pairs of
  crops (:mod:`mast3r.utils.coarse_to_fine`), optionally warped by a homography that centres the principal
  point, inferred in batches of up to ``max_batch_size`` and matched at full (or ``max_image_size``) resolution.

The 2D-3D matches of all map images feed :func:`dust3r_visloc.localization.run_pnp`.

Pixels: OpenCV convention (integer coordinates at pixel centres). The view ``to_orig`` / ``to_resize`` matrices
act on COLMAP-convention coordinates (``+0.5``), :func:`_warp_pixels` applies them; crop transforms act on
OpenCV coordinates directly.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from dust3r.inference import inference, loss_of_one_batch
from dust3r.utils.device import collate_with_cat
from dust3r.utils.geometry import colmap_to_opencv_intrinsics, geotrf, opencv_to_colmap_intrinsics
from dust3r.utils.image import ImgNorm
from dust3r_visloc.datasets.utils import get_HW_resolution, model_maxdim, rescale_points3d
from dust3r_visloc.localization import run_pnp
from mast3r.fast_nn import fast_reciprocal_NNs
from mast3r.utils.coarse_to_fine import crop_slice, select_pairs_of_crops

logger = logging.getLogger(__name__)

__all__ = ["MatchingOptions", "PairMatches", "QueryResult", "EncoderCache", "coarse_matching", "crops_inference", "fine_matching",
           "crop", "resize_image_to_max", "match_query", "match_pair_c2f", "estimate_pose", "model_maxdim"]

_BORDER = 3  # coarse matches closer than this to an image border are dropped (pixel_tol == 0 path)


@dataclass
class MatchingOptions:
    """How a query is matched (the matching flags of ``visloc.py``)."""
    pixel_tol: int = 5
    coarse_to_fine: bool = False
    max_image_size: Optional[int] = None
    c2f_crop_with_homography: bool = False
    max_batch_size: int = 48
    device: str = "cpu"
    fast_nn_params: Dict[str, Any] = field(default_factory=lambda: dict(dist="dot", block_size=2 ** 13))

    def __post_init__(self) -> None:
        if int(self.pixel_tol) <= 0:
            raise ValueError(f"pixel_tol must be > 0 (matches are seeded at the map's 3D points), got {self.pixel_tol}")
        if int(self.max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_image_size is not None and int(self.max_image_size) < 16:
            raise ValueError(f"max_image_size must be >= 16, got {self.max_image_size}")

    def nn_params(self) -> Dict[str, Any]:
        return dict(device=self.device, **self.fast_nn_params)


@dataclass
class PairMatches:
    """Matches of a query with one map image: (N, 3) world points, (N, 2) query and map pixels (original
    images, OpenCV convention) and (N,) confidences."""
    pts3d: np.ndarray
    query_xy: np.ndarray
    map_xy: np.ndarray
    conf: np.ndarray

    @classmethod
    def empty(cls) -> "PairMatches":
        return cls(np.zeros((0, 3)), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0,)))

    def __len__(self) -> int:
        return len(self.pts3d)

    def as_dict(self) -> Dict[str, np.ndarray]:
        return dict(valid_pts3d=self.pts3d, matches_im_query=self.query_xy, matches_im_map=self.map_xy,
                    matches_conf=self.conf)

    def above(self, conf_thr: float) -> "PairMatches":
        keep = self.conf >= conf_thr
        return PairMatches(self.pts3d[keep], self.query_xy[keep], self.map_xy[keep], self.conf[keep])


@dataclass
class QueryResult:
    """Outcome of one query: ``cam2world`` None when it failed, with the reason."""
    name: str
    cam2world: Optional[np.ndarray]
    n_matches: int
    reason: str = ""

    @property
    def success(self) -> bool:
        return self.cam2world is not None


def _warp_pixels(T: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a COLMAP-convention pixel transform (3, 3) to OpenCV-convention pixels (N, 2)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return geotrf(np.asarray(T, dtype=np.float64), xy + 0.5, norm=True) - 0.5


def _pair_views(query_img: torch.Tensor, map_img: torch.Tensor) -> Tuple[dict, dict]:
    views = []
    for idx, img in enumerate((query_img, map_img)):
        views.append(dict(img=img[None], true_shape=np.int32([img.shape[1:]]), idx=idx, instance=str(idx)))
    return views[0], views[1]


def _matches_from_preds(query_view: dict, map_view: dict, desc_q: torch.Tensor, desc_m: torch.Tensor,
                        conf_q: np.ndarray, conf_m: np.ndarray, pixel_tol: int, fast_nn_params: dict) -> PairMatches:
    """Coarse matches of one pair from its descriptors ((h, w, D) each, network resolution)."""
    if pixel_tol == 0:
        xy_m, xy_q = fast_reciprocal_NNs(desc_m, desc_q, subsample_or_initxy1=8, **fast_nn_params)
        HM, WM = map_view["rgb_rescaled"].shape[1:]
        HQ, WQ = query_view["rgb_rescaled"].shape[1:]
        inside = ((xy_m[:, 0] >= _BORDER) & (xy_m[:, 0] < WM - _BORDER) & (xy_m[:, 1] >= _BORDER)
                  & (xy_m[:, 1] < HM - _BORDER) & (xy_q[:, 0] >= _BORDER) & (xy_q[:, 0] < WQ - _BORDER)
                  & (xy_q[:, 1] >= _BORDER) & (xy_q[:, 1] < HQ - _BORDER))
        xy_m, xy_q = xy_m[inside], xy_q[inside]
        pts3d, conf = np.zeros((len(xy_m), 3)), np.zeros(len(xy_m))
    else:
        ys, xs = torch.where(map_view["valid_rescaled"])
        if len(xs) == 0:
            return PairMatches.empty()
        xy_m, xy_q = fast_reciprocal_NNs(desc_m, desc_q, (xs, ys), pixel_tol=pixel_tol, **fast_nn_params)
        pts3d = map_view["pts3d_rescaled"].cpu().numpy()[xy_m[:, 1], xy_m[:, 0]].astype(np.float64)
        conf = np.minimum(conf_m[xy_m[:, 1], xy_m[:, 0]], conf_q[xy_q[:, 1], xy_q[:, 0]])
    return PairMatches(pts3d, _warp_pixels(query_view["to_orig"], xy_q), _warp_pixels(map_view["to_orig"], xy_m),
                       np.asarray(conf, dtype=np.float64))


class EncoderCache:
    """Encoder outputs of images by key, least recently used dropped beyond ``max_items``: a map image retrieved
    by several queries (and a query shared by its ``topk`` pairs) is encoded once. Used for models running the
    stock ``AsymmetricCroCo3DStereo`` forward (its ``_encode_image`` / ``_decoder`` / ``_downstream_head``);
    other models (e.g. the synthetic oracle) go through :func:`dust3r.inference.inference`.

    Args:
        model: the network; device: where the features stay; max_items: cache size (a 512x384 ViT-L image is
            768 tokens x 1024 floats = 3 MB).
    """

    def __init__(self, model, device, max_items: int = 128):
        self.model, self.device, self.max_items = model, device, int(max_items)
        self.entries: "OrderedDict[Any, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]" = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def usable(model) -> bool:
        from dust3r.model import AsymmetricCroCo3DStereo

        return (isinstance(model, AsymmetricCroCo3DStereo) and type(model).forward is AsymmetricCroCo3DStereo.forward
                and type(model)._encode_symmetrized is AsymmetricCroCo3DStereo._encode_symmetrized)

    @torch.no_grad()
    def encode(self, key, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens, positions, true_shape)`` of an image (3, h, w), each with a leading batch dim of 1."""
        full_key = (key, tuple(img.shape))
        if full_key in self.entries:
            self.hits += 1
            self.entries.move_to_end(full_key)
            return self.entries[full_key]
        self.misses += 1
        batch = img[None].to(self.device)
        shape = torch.tensor([list(img.shape[-2:])], device=self.device)
        feat, pos, _ = self.model._encode_image(batch, shape)
        self.entries[full_key] = (feat, pos, shape)
        while len(self.entries) > self.max_items:
            self.entries.popitem(last=False)
        return self.entries[full_key]

    @torch.no_grad()
    def predict(self, query_key, query_img: torch.Tensor, map_keys: Sequence, map_imgs: Sequence[torch.Tensor]
                ) -> List[Tuple[dict, dict]]:
        """``(pred1, pred2)`` (batch dim 1, on CPU) of each (query, map image) pair, as the model's forward gives."""
        from dust3r.model import upcast

        fq, pq, sq = self.encode(query_key, query_img)
        out = []
        for key, img in zip(map_keys, map_imgs):
            fm, pm, sm = self.encode(key, img)
            dec1, dec2 = self.model._decoder(fq, pq, fm, pm)
            with torch.autocast(device_type=fq.device.type, enabled=False):
                pred1 = self.model._downstream_head(1, [upcast(t) for t in dec1], sq)
                pred2 = self.model._downstream_head(2, [upcast(t) for t in dec2], sm)
            pred2["pts3d_in_other_view"] = pred2.pop("pts3d")
            out.append(({k: v.cpu() for k, v in pred1.items()}, {k: v.cpu() for k, v in pred2.items()}))
        return out


def _conf_of(pred: dict) -> torch.Tensor:
    return pred["desc_conf"] if "desc_conf" in pred else pred["conf"]


@torch.no_grad()
def coarse_matching_many(query_view: dict, map_views: Sequence[dict], model, device, pixel_tol: int,
                         fast_nn_params: dict, batch_size: int = 8,
                         encoder_cache: Optional[EncoderCache] = None) -> List[PairMatches]:
    """:func:`coarse_matching` of one query with several map images; the query is encoded once (and, with an
    ``encoder_cache``, a map image once for all the queries that retrieve it)."""
    if not map_views:
        return []
    if encoder_cache is not None and EncoderCache.usable(model):
        preds = encoder_cache.predict(("query", query_view["image_name"]), query_view["rgb_rescaled"],
                                      [("map", m["image_name"]) for m in map_views],
                                      [m["rgb_rescaled"] for m in map_views])
        pred1 = {k: [p[0][k][0] for p in preds] for k in preds[0][0]}
        pred2 = {k: [p[1][k][0] for p in preds] for k in preds[0][1]}
    else:
        pairs = [_pair_views(query_view["rgb_rescaled"], m["rgb_rescaled"]) for m in map_views]
        out = inference(pairs, model, device, batch_size=batch_size, verbose=False)
        pred1, pred2 = out["pred1"], out["pred2"]
    results = []
    for k, map_view in enumerate(map_views):
        desc_q, desc_m = pred1["desc"][k].detach(), pred2["desc"][k].detach()
        conf_q, conf_m = _conf_of(pred1)[k].cpu().numpy(), _conf_of(pred2)[k].cpu().numpy()
        results.append(_matches_from_preds(query_view, map_view, desc_q, desc_m, conf_q, conf_m, pixel_tol,
                                           fast_nn_params))
    return results


def coarse_matching(query_view: dict, map_view: dict, model, device, pixel_tol: int, fast_nn_params: dict):
    """Matches of a query and a map image at the network resolution (the original's function).

    Returns:
        ``(valid_pts3d, matches_im_query, matches_im_map, matches_confs)``: (N, 3), (N, 2), (N, 2), (N,) arrays;
        with ``pixel_tol == 0`` (grid-seeded matches, used to pick crops) the points and confidences are zeros.
    """
    m = coarse_matching_many(query_view, [map_view], model, device, pixel_tol, fast_nn_params, batch_size=1)[0]
    return m.pts3d, m.query_xy, m.map_xy, m.conf


@torch.no_grad()
def crops_inference(pairs, model, device, batch_size: int = 48, verbose: bool = True) -> dict:
    """Forward batched crop pairs ``(view1, view2)`` (each ``img`` (B, 3, h, w)) in chunks of ``batch_size``;
    returns ``dict(pred1, pred2)`` concatenated over the chunks."""
    if len(pairs) != 2:
        raise ValueError("crops_inference expects a (view1, view2) tuple of batched views")
    B = pairs[0]["img"].shape[0]
    preds = []
    for start in range(0, B, batch_size):
        chunk = [{k: v[start:start + batch_size] for k, v in view.items() if v is not None} for view in pairs]
        res = loss_of_one_batch(chunk, model, None, device=device, symmetrize_batch=False)
        preds.append({"pred1": res["pred1"], "pred2": res["pred2"]})
    return collate_with_cat(preds)


@torch.no_grad()
def fine_matching(query_views: dict, map_views: dict, model, device, max_batch_size: int, pixel_tol: int,
                  fast_nn_params: dict):
    """Matches of batched crop pairs, in the pixels of the images the crops come from.

    Args:
        query_views: ``img`` (B, 3, h, w), ``to_orig`` (B, 3, 3) crop -> image pixels (OpenCV convention).
        map_views: the same plus ``valid`` (B, h, w) and ``pts3d`` (B, h, w, 3).

    Returns:
        ``(valid_pts3d, matches_im_query, matches_im_map, matches_confs)`` as :func:`coarse_matching`.
    """
    if pixel_tol <= 0:
        raise ValueError("fine_matching needs pixel_tol > 0")
    net_views = [{k: v[k] for k in ("img", "instance", "true_shape", "to_orig") if k in v} for v in (query_views, map_views)]
    out = crops_inference(net_views, model, device, batch_size=max_batch_size, verbose=False)
    pred1, pred2 = out["pred1"], out["pred2"]
    parts = []
    for b in range(pred1["desc"].shape[0]):
        ys, xs = torch.where(map_views["valid"][b])
        if len(xs) == 0:
            continue
        xy_m, xy_q = fast_reciprocal_NNs(pred2["desc"][b], pred1["desc"][b], (xs, ys), pixel_tol=pixel_tol,
                                         **fast_nn_params)
        pts3d = map_views["pts3d"][b].cpu().numpy()[xy_m[:, 1], xy_m[:, 0]]
        conf = np.minimum(_conf_of(pred2)[b].cpu().numpy()[xy_m[:, 1], xy_m[:, 0]],
                          _conf_of(pred1)[b].cpu().numpy()[xy_q[:, 1], xy_q[:, 0]])
        to_map = np.asarray(map_views["to_orig"][b], dtype=np.float64)
        to_query = np.asarray(query_views["to_orig"][b], dtype=np.float64)
        parts.append(PairMatches(pts3d.astype(np.float64), geotrf(to_query, xy_q.astype(np.float64), norm=True),
                                 geotrf(to_map, xy_m.astype(np.float64), norm=True), conf.astype(np.float64)))
    if not parts:
        m = PairMatches.empty()
    else:
        m = PairMatches(*(np.concatenate(arrays) for arrays in zip(*((p.pts3d, p.query_xy, p.map_xy, p.conf)
                                                                    for p in parts))))
    return m.pts3d, m.query_xy, m.map_xy, m.conf


def _warp(array: np.ndarray, H: np.ndarray, size: Tuple[int, int], interpolation: int) -> np.ndarray:
    """``out[y, x] = array[H (x, y, 1)]`` (OpenCV pixel convention) for an output of ``size`` (w, h)."""
    import cv2

    return cv2.warpPerspective(array, H, size, flags=interpolation | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop(img: torch.Tensor, mask: Optional[torch.Tensor], pts3d: Optional[torch.Tensor], crop, intrinsics=None):
    """Cut a cell ``(l, t, r, b)`` out of an image (H, W, 3) in [-1, 1], its mask (H, W) and points (H, W, 3).

    With ``intrinsics`` (OpenCV (3, 3)), the crop is replaced by a homography that rotates the camera so the
    crop's centre becomes the principal point (``mast3r.datasets.utils.cropping.crop_to_homography``); pixels
    are resampled bicubically, masks and points with nearest neighbour (no mixing of depths).

    Returns:
        ``(img, mask, pts3d, to_orig)`` with ``to_orig`` (3, 3) float64 crop pixels -> image pixels.
    """
    import cv2

    if intrinsics is None:
        rows, cols = crop_slice(crop)
        to_orig = np.eye(3)
        to_orig[:2, 2] = (crop[0], crop[1])
        return (img[rows, cols], None if mask is None else mask[rows, cols],
                None if pts3d is None else pts3d[rows, cols], torch.from_numpy(to_orig))
    from mast3r.datasets.utils.cropping import crop_to_homography

    imsize, _, _, H = crop_to_homography(np.asarray(intrinsics, dtype=np.float64), np.asarray(crop, dtype=np.float64))
    H = H / H[2, 2]
    imsize = (int(imsize[0]), int(imsize[1]))
    out_img = torch.from_numpy(_warp(img.cpu().numpy().astype(np.float32), H, imsize, cv2.INTER_CUBIC)).clamp(-1, 1)
    out_mask = out_pts = None
    if pts3d is not None:
        out_pts = torch.from_numpy(_warp(pts3d.cpu().numpy().astype(np.float32), H, imsize, cv2.INTER_NEAREST))
    if mask is not None:  # outside the source image the warp fills 0: no valid point there
        out_mask = torch.from_numpy(_warp(mask.cpu().numpy().astype(np.uint8), H, imsize, cv2.INTER_NEAREST) > 0)
    return out_img, out_mask, out_pts, torch.from_numpy(H)


def resize_image_to_max(max_image_size: Optional[int], rgb, K: np.ndarray):
    """The image (PIL) as an (H', W', 3) tensor in [-1, 1] with its long side at most ``max_image_size``.

    Returns:
        ``(rgb_tensor, K', to_orig_max, to_resize_max, (H', W'))``: K' OpenCV intrinsics of the resized image,
        the (3, 3) scalings back to / from original pixels (COLMAP convention).
    """
    W, H = rgb.size
    tensor = ImgNorm(rgb)
    if not max_image_size or max(W, H) <= max_image_size:
        return tensor.permute(1, 2, 0), np.asarray(K, dtype=np.float64), np.eye(3), np.eye(3), (H, W)
    if W >= H:
        WM, HM = int(max_image_size), int(H * (max_image_size / W))
    else:
        HM, WM = int(max_image_size), int(W * (max_image_size / H))
    tensor = F.interpolate(tensor[None], size=(HM, WM), mode="bilinear", antialias=True, align_corners=False)[0]
    to_resize = np.diag([WM / W, HM / H, 1.0])
    new_K = colmap_to_opencv_intrinsics(to_resize @ opencv_to_colmap_intrinsics(np.asarray(K, dtype=np.float64)))
    return tensor.permute(1, 2, 0), new_K, np.diag([W / WM, H / HM, 1.0]), to_resize, (HM, WM)


def _stack_crops(crops: List[tuple], with_points: bool) -> dict:
    imgs, masks, pts, to_orig = zip(*crops)
    view = dict(img=torch.stack(imgs).permute(0, 3, 1, 2).contiguous(), to_orig=torch.stack(to_orig),
                instance=[str(k) for k in range(len(imgs))])
    view["true_shape"] = torch.tensor([list(view["img"].shape[-2:])] * len(imgs), dtype=torch.int32)
    if with_points:
        view.update(valid=torch.stack(masks), pts3d=torch.stack(pts))
    return view


@torch.no_grad()
def match_pair_c2f(query_view: dict, map_view: dict, model, opts: MatchingOptions) -> PairMatches:
    """Coarse-to-fine matches of a query and a map image (both larger than the network input)."""
    maxdim = model_maxdim(model)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", 16)
    nn = opts.nn_params()
    _, coarse_q, coarse_m, _ = coarse_matching(query_view, map_view, model, opts.device, 0, nn)
    q_rgb, q_K, q_to_orig, q_to_resize, (HQ, WQ) = resize_image_to_max(opts.max_image_size, query_view["rgb"],
                                                                         query_view["intrinsics"])
    m_rgb, m_K, m_to_orig, m_to_resize, (HM, WM) = resize_image_to_max(opts.max_image_size, map_view["rgb"],
                                                                         map_view["intrinsics"])
    valid, pts3d = map_view["valid"], map_view["pts3d"]
    if (HM, WM) != tuple(valid.shape):
        ys, xs = torch.where(valid)
        xy = torch.stack([xs, ys], dim=-1).cpu().numpy().astype(np.float64)
        _, _, pts_max, valid_max = rescale_points3d(xy, pts3d[ys, xs].cpu().numpy(), m_to_resize, HM, WM)
        pts3d, valid = torch.from_numpy(pts_max), torch.from_numpy(valid_max)
    coarse_q, coarse_m = _warp_pixels(q_to_resize, coarse_q), _warp_pixels(m_to_resize, coarse_m)
    res_q = get_HW_resolution(HQ, WQ, maxdim=maxdim, patchsize=patch)
    res_m = get_HW_resolution(HM, WM, maxdim=maxdim, patchsize=patch)
    Kq, Km = (q_K, m_K) if opts.c2f_crop_with_homography else (None, None)
    map_crops, query_crops = [], []
    for cell_m, cell_q, _ in select_pairs_of_crops(m_rgb, q_rgb, coarse_m, coarse_q, maxdim=maxdim, overlap=.5,
                                                   forced_resolution=[res_m, res_q]):
        map_crops.append(crop(m_rgb, valid, pts3d, cell_m, Km))
        query_crops.append(crop(q_rgb, None, None, cell_q, Kq))
    if not map_crops:
        return PairMatches.empty()
    pts, xy_q, xy_m, conf = fine_matching(_stack_crops(query_crops, False), _stack_crops(map_crops, True), model,
                                          opts.device, opts.max_batch_size, opts.pixel_tol, nn)
    return PairMatches(pts, _warp_pixels(q_to_orig, xy_q), _warp_pixels(m_to_orig, xy_m), conf)


def match_query(query_view: dict, map_views: Sequence[dict], model, opts: MatchingOptions,
                encoder_cache: Optional[EncoderCache] = None) -> List[PairMatches]:
    """Matches of a query with each of its map images (coarse-to-fine when asked and the images are larger than
    the network input); ``encoder_cache`` reuses encoder outputs across calls (single-scale matching)."""
    maxdim = model_maxdim(model)
    W, H = query_view["rgb"].size
    if opts.coarse_to_fine and maxdim < max(W, H):
        return [match_pair_c2f(query_view, m, model, opts) for m in map_views]
    return coarse_matching_many(query_view, map_views, model, opts.device, opts.pixel_tol, opts.nn_params(),
                                batch_size=min(len(map_views), opts.max_batch_size) or 1, encoder_cache=encoder_cache)


def estimate_pose(query_view: dict, matches: Sequence[PairMatches], pnp_mode: str, reprojection_error: float,
                  reprojection_error_diag_ratio: Optional[float] = None, pnp_max_points: int = 100_000,
                  conf_thr: float = 1.001, seed: int = 0) -> QueryResult:
    """Pose of the query from its matches with all map images (confidence-filtered, at most ``pnp_max_points``
    drawn with a seeded generator)."""
    kept = [m.above(conf_thr) for m in matches]
    pts2d = np.concatenate([m.query_xy for m in kept] or [np.zeros((0, 2))]).astype(np.float64)
    pts3d = np.concatenate([m.pts3d for m in kept] or [np.zeros((0, 3))]).astype(np.float64)
    name = query_view["image_name"]
    if len(pts2d) == 0:
        return QueryResult(name, None, 0, "no matches")
    if len(pts2d) > pnp_max_points:
        sel = np.random.default_rng(seed).choice(len(pts2d), size=pnp_max_points, replace=False)
        pts2d, pts3d = pts2d[sel], pts3d[sel]
    W, H = query_view["rgb"].size
    threshold = (reprojection_error_diag_ratio * math.hypot(W, H) if reprojection_error_diag_ratio is not None
                 else reprojection_error)
    ok, cam2world = run_pnp(pts2d, pts3d, query_view["intrinsics"], query_view["distortion"], pnp_mode, threshold,
                            img_size=[W, H])
    return QueryResult(name, cam2world if ok else None, len(pts2d), "" if ok else "PnP failed")
