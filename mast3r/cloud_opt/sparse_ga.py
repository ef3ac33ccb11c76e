"""MASt3R sparse global alignment: many views -> cameras (K, cam2world), anchor depths and 3D points.

Pipeline (:func:`sparse_global_alignment`):

1. symmetric forward of every pair (``forward_cache``), cached on disk by content hash;
2. reciprocal descriptor matches per pair (``correspondences``);
3. one canonical pointmap and focal estimate per image (``canonical``), streamed over the pairs;
4. a kinematic tree over the cameras (``kinematic``);
5. coarse 3D alignment then 2D reprojection refinement (``optimizer``);
6. a :class:`~mast3r.cloud_opt.scene.SparseGA` scene object.

Known cameras (``known_intrinsics``, ``known_poses``) are either kept fixed or used as initialisation.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from dust3r.utils.geometry import align_camera_poses, apply_sim3_to_poses
from dust3r.utils.image import intrinsics_from_original

from .canonical import CanonicalAccumulator, CanonicalView, anchor_depth_offsets, anchor_grid, build_canonical_view
from .correspondences import PairMatches, extract_correspondences, pair_scores
from .defaults import SPARSE_GA_DEFAULTS
from .forward_cache import CACHE_VERSION, CacheStore, image_fingerprint, model_fingerprint, run_symmetric_forward
from .kinematic import build_kinematic_tree, compute_min_spanning_tree
from .optimizer import (AlignmentResult, CameraPrior, MatchSet, OptimOptions, PointSet, RegressionSet,
                        SceneProblem, optimize_scene)
from .scene import SparseGA, view_meta, view_to_rgb
from .symmetric_forward import forward_mast3r, symmetric_inference

logger = logging.getLogger(__name__)

__all__ = ["sparse_global_alignment", "SparseGA", "convert_dust3r_pairs_naming", "compute_min_spanning_tree",
           "symmetric_inference", "forward_mast3r"]


def convert_dust3r_pairs_naming(imgs: Sequence[Any], pairs_in: Sequence) -> List:
    """Copies of the pairs whose views' ``instance`` is the image name ``imgs[view['idx']]`` (the original
    mutated its input; this returns new view dicts)."""
    out = []
    for v1, v2 in pairs_in:
        out.append(tuple(dict(v, instance=str(imgs[v["idx"]])) for v in (v1, v2)))
    return out


# --------------------------------------------------------------------------------------------- inputs
@dataclass
class _Inputs:
    names: List[str]
    views: List[Dict[str, Any]]           # one view dict per image
    pairs: List[Tuple[int, int]]          # unordered unique pairs (i != j)


def _image_index(view: Dict[str, Any], names: List[str], k: int, side: int) -> int:
    idx = view.get("idx")
    if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool) and 0 <= int(idx) < len(names):
        return int(idx)
    inst = view.get("instance")
    if inst is not None and str(inst) in names:
        return names.index(str(inst))
    raise ValueError(f"pairs_in[{k}][{side}] cannot be matched to an image: its 'idx'={idx!r} is not an index into "
                     f"the {len(names)} images and its 'instance'={inst!r} is not one of their names")


def _parse_inputs(imgs: Sequence[Any], pairs_in: Sequence) -> _Inputs:
    if imgs is None or len(imgs) == 0:
        raise ValueError("sparse_global_alignment got no images")
    if not pairs_in:
        raise ValueError("sparse_global_alignment got no image pairs (pairs_in is empty)")
    names = [str(v.get("instance", k)) if isinstance(v, dict) else str(v) for k, v in enumerate(imgs)]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"image names must be unique, got duplicates {dup}")
    views: List[Optional[Dict[str, Any]]] = [None] * len(names)
    pairs, seen = [], set()
    for k, pair in enumerate(pairs_in):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(v, dict) and "img" in v
                                                                          for v in pair)):
            raise ValueError(f"pairs_in[{k}] is not a (view1, view2) pair of view dicts with an 'img' entry")
        i, j = (_image_index(v, names, k, s) for s, v in enumerate(pair))
        for idx, v in ((i, pair[0]), (j, pair[1])):
            if views[idx] is None:
                views[idx] = v
        if i == j:
            logger.warning("ignoring pairs_in[%d]: it pairs image %s with itself", k, names[i])
            continue
        key = (min(i, j), max(i, j))
        if key not in seen:
            seen.add(key)
            pairs.append((i, j))
    missing = [names[i] for i, v in enumerate(views) if v is None]
    if missing:
        raise ValueError(f"images {missing} are in no pair of pairs_in; every image needs at least one pair")
    return _Inputs(names, views, pairs)


def _duplicate_single(inputs: _Inputs) -> _Inputs:
    """One image: align it with a copy of itself (as the original demo does)."""
    v0 = inputs.views[0]
    v1 = dict(v0, idx=1, instance=f"{inputs.names[0]}_2")
    logger.warning("sparse_global_alignment: a single image; it is duplicated to form a pair")
    return _Inputs([inputs.names[0], f"{inputs.names[0]}_2"], [v0, v1], [(0, 1)])


# --------------------------------------------------------------------------------------------- forward stage
@dataclass
class _PairRecord:
    """What is kept of a pair after streaming: matches, scores and the predictions at the anchors of each image
    expressed in the *other* camera's frame (for the DUSt3R fallback loss)."""
    i: int
    j: int
    matches: PairMatches
    score: Tuple[float, float, int]
    G12: torch.Tensor   # (A_i, 3) points of image i at its anchors, camera-j frame
    Q12: torch.Tensor   # (A_i,)
    G21: torch.Tensor   # (A_j, 3) points of image j at its anchors, camera-i frame
    Q21: torch.Tensor

    def state(self) -> dict:
        return dict(xy_i=self.matches.xy_i, xy_j=self.matches.xy_j, conf=self.matches.conf,
                    score=torch.tensor(self.score[:2], dtype=torch.float64), n=torch.tensor(self.score[2]),
                    G12=self.G12, Q12=self.Q12, G21=self.G21, Q21=self.Q21)

    @classmethod
    def from_state(cls, i: int, j: int, s: dict, swap: bool = False) -> "_PairRecord":
        m = PairMatches(s["xy_i"].long(), s["xy_j"].long(), s["conf"].float())
        score = (float(s["score"][0]), float(s["score"][1]), int(s["n"]))
        if swap:
            return cls(i, j, m.swapped(), score, s["G21"], s["Q21"], s["G12"], s["Q12"])
        return cls(i, j, m, score, s["G12"], s["Q12"], s["G21"], s["Q21"])


def _grid(x: torch.Tensor, subsample: int) -> torch.Tensor:
    S = subsample
    g = x[S // 2::S, S // 2::S]
    return g.reshape(-1, 3) if g.ndim == 3 else g.reshape(-1)


def _key(*parts: Any) -> str:
    return hashlib.sha1("|".join(map(str, (CACHE_VERSION,) + parts)).encode()).hexdigest()[:32]


class _ForwardStage:
    """Streams the pairs through the model (or the cache), filling per-pair records and canonical views."""

    def __init__(self, inputs: _Inputs, model, store: CacheStore, subsample: int, desc_conf: str, device,
                 canonical_mode: str, batch_pairs: int, verbose: bool) -> None:
        self.inputs, self.model, self.store = inputs, model, store
        self.S, self.desc_conf, self.device, self.mode = subsample, desc_conf, device, canonical_mode
        self.batch_pairs, self.verbose = batch_pairs, verbose
        self.img_fp = [image_fingerprint(v) for v in inputs.views]
        self.model_fp = model_fingerprint(model) if model is not None else "none"
        self.n_model_pairs = 0

    def _pair_key(self, kind: str, i: int, j: int) -> str:
        extra = (self.S, self.desc_conf) if kind == "corres" else ()
        return _key(kind, self.img_fp[i], self.img_fp[j], self.model_fp, *extra)

    def _canon_key(self, i: int) -> str:
        partners = sorted(self.img_fp[b if a == i else a] for a, b in self.inputs.pairs if i in (a, b))
        return _key("canon", self.img_fp[i], self.model_fp, self.S, self.mode, *partners)

    def _load_pair(self, kind: str, i: int, j: int):
        """Cached state of pair (i, j) (or of (j, i), then flagged swapped)."""
        state = self.store.load(kind, self._pair_key(kind, i, j))
        if state is not None:
            return state, False
        state = self.store.load(kind, self._pair_key(kind, j, i))
        return (state, True) if state is not None else (None, False)

    def _shape(self, i: int) -> Tuple[int, int]:
        H, W = self.inputs.views[i]["img"].shape[-2:]
        return int(H), int(W)

    def run(self) -> Tuple[List[_PairRecord], List[CanonicalView]]:
        n = len(self.inputs.names)
        canon: List[Optional[CanonicalView]] = [None] * n
        for i in range(n):
            state = self.store.load("canon", self._canon_key(i))
            if state is not None:
                canon[i] = CanonicalView.from_state(state)
        accs = {i: CanonicalAccumulator(*self._shape(i), self.S, self.mode) for i in range(n) if canon[i] is None}
        records: Dict[Tuple[int, int], _PairRecord] = {}
        todo: List[Tuple[int, int]] = []
        for i, j in self.inputs.pairs:
            state, swap = self._load_pair("corres", i, j)
            if state is not None:
                records[i, j] = _PairRecord.from_state(i, j, state, swap)
            need_dense = i in accs or j in accs
            if state is not None and not need_dense:
                continue
            if state is not None:
                dense, dswap = self._load_pair("forward", i, j)
                if dense is not None:
                    X11, C11, X22, C22 = (dense[k] for k in ("X11", "C11", "X22", "C22"))
                    if dswap:
                        X11, C11, X22, C22 = X22, C22, X11, C11
                    self._accumulate(accs, i, j, X11, C11, X22, C22)
                    continue
            todo.append((i, j))
        if todo:
            if self.model is None:
                raise ValueError(f"{len(todo)} pair(s) are not in the cache and no model was given")
            views = self.inputs.views
            names = [f"({self.inputs.names[i]}, {self.inputs.names[j]})" for i, j in todo]
            stream = run_symmetric_forward(self.model, [(views[i], views[j]) for i, j in todo], self.device,
                                           self.desc_conf, names, self.batch_pairs)
            for (i, j), (fwd, desc) in tqdm(zip(todo, stream), total=len(todo), desc="sparse GA forward",
                                            disable=not self.verbose, leave=False):
                self.n_model_pairs += 1
                if (i, j) not in records:
                    matches = extract_correspondences(desc, self.S, self.device)
                    rec = _PairRecord(i, j, matches, pair_scores(fwd, matches),
                                      _grid(fwd.X12, self.S), _grid(fwd.C12, self.S),
                                      _grid(fwd.X21, self.S), _grid(fwd.C21, self.S))
                    records[i, j] = rec
                    self.store.save("corres", self._pair_key("corres", i, j), rec.state())
                self.store.save("forward", self._pair_key("forward", i, j),
                                dict(X11=fwd.X11, C11=fwd.C11, X22=fwd.X22, C22=fwd.C22))
                self._accumulate(accs, i, j, fwd.X11, fwd.C11, fwd.X22, fwd.C22)
                del fwd, desc
        for i, acc in accs.items():
            if acc.n == 0:
                raise ValueError(f"no prediction was accumulated for image {self.inputs.names[i]}")
            canon[i] = build_canonical_view(acc)
            self.store.save("canon", self._canon_key(i), canon[i].to_state())
        return [records[p] for p in self.inputs.pairs], canon

    @staticmethod
    def _accumulate(accs, i, j, X11, C11, X22, C22) -> None:
        if i in accs:
            accs[i].add(X11, C11)
        if j in accs:
            accs[j].add(X22, C22)


# --------------------------------------------------------------------------------------------- problem
def _anchor_points(i: int, cv: CanonicalView, core_start: int) -> PointSet:
    H, W = cv.shape
    ys, xs = anchor_grid(H, W, cv.subsample)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    xy = torch.stack((gx.reshape(-1), gy.reshape(-1)), -1).float()
    n = len(xy)
    return PointSet(torch.full((n,), i), xy, core_start + torch.arange(n), torch.ones(n))


def _cat_points(sets: List[PointSet]) -> PointSet:
    if not sets:
        return PointSet(torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long),
                        torch.zeros(0))
    return PointSet(*(torch.cat([getattr(s, f.name) for s in sets]) for f in fields(PointSet)))


@dataclass
class _Problem:
    problem: SceneProblem
    point_img: torch.Tensor


def _build_problem(names: List[str], records: List[_PairRecord], canon: List[CanonicalView], subsample: int,
                   matching_conf_thr: float, min_conf_thr: float, kinematic_mode: str,
                   known_K: Optional[torch.Tensor], device, dtype) -> SceneProblem:
    n = len(names)
    imsizes = torch.tensor([[cv.shape[1], cv.shape[0]] for cv in canon])
    base_focals = torch.tensor([cv.focal for cv in canon], dtype=torch.float64)
    pps = torch.stack([cv.pp for cv in canon]).double()
    if known_K is not None:
        known = ~torch.isnan(known_K[:, 0, 0])
        base_focals[known] = known_K[known][:, [0, 1], [0, 1]].mean(-1).double()
        pps[known] = known_K[known][:, :2, 2].double()
    cores = [cv.core_depth(names[i]) for i, cv in enumerate(canon)]
    core_start = np.cumsum([0] + [len(c) for c in cores])
    core_img = torch.cat([torch.full((len(c),), i) for i, c in enumerate(cores)])

    point_sets: List[PointSet] = []
    n_points = 0
    ma, mb, mconf = [], [], []
    reg_points, reg_cam, reg_target, reg_conf = [], [], [], []
    scores = np.zeros((n, n))
    for rec in records:
        m = rec.matches.filtered(min_conf_thr)
        ok = len(m) > 0 and float(m.conf.max()) > matching_conf_thr
        if len(m) == 0:
            logger.warning("image pair (%s, %s) has no correspondence; it only contributes the DUSt3R "
                           "regression term", names[rec.i], names[rec.j])
        else:
            scores[rec.i, rec.j] = scores[rec.j, rec.i] = len(m)
        if ok:
            k = len(m)
            for img, xy in ((rec.i, m.xy_i), (rec.j, m.xy_j)):
                core, off = anchor_depth_offsets(canon[img].canon2, xy, subsample)
                point_sets.append(PointSet(torch.full((k,), img), xy.float(), core + int(core_start[img]), off))
            ma.append(n_points + torch.arange(k))
            mb.append(n_points + k + torch.arange(k))
            mconf.append(m.conf)
            n_points += 2 * k
        else:
            for img, other, G, Q in ((rec.i, rec.j, rec.G12, rec.Q12), (rec.j, rec.i, rec.G21, rec.Q21)):
                reg_points.append(_anchor_points(img, canon[img], int(core_start[img])))
                reg_cam.append(torch.full((len(Q),), other))
                reg_target.append(G.float())
                reg_conf.append(Q.float())
    tree = build_kinematic_tree(scores, kinematic_mode, imsizes.numpy(), subsample, names)
    points = _cat_points(point_sets)
    empty = torch.zeros(0, dtype=torch.long)
    matches = MatchSet(torch.cat(ma) if ma else empty, torch.cat(mb) if mb else empty,
                       torch.cat(mconf) if mconf else torch.zeros(0))
    # points sorted by image (stable): the optimiser then moves them to the world frame image by image
    order = torch.argsort(points.img, stable=True)
    new_index = torch.empty_like(order)
    new_index[order] = torch.arange(len(order))
    points = PointSet(*(getattr(points, f.name)[order] for f in fields(PointSet)))
    matches = MatchSet(new_index[matches.a], new_index[matches.b], matches.conf)
    regression = None
    if reg_points:
        regression = RegressionSet(_cat_points(reg_points), torch.cat(reg_cam), torch.cat(reg_target),
                                   torch.cat(reg_conf))
    problem = SceneProblem(imsizes=imsizes.to(device), base_focals=base_focals.to(device, dtype),
                           pps=pps.to(device, dtype), core_depth=torch.cat(cores).to(device, dtype),
                           core_img=core_img.to(device), points=points.to(device, dtype),
                           matches=matches.to(device, dtype),
                           regression=regression.to(device, dtype) if regression is not None else None, tree=tree)
    return problem


# --------------------------------------------------------------------------------------------- known cameras
def _per_image(value: Any, n: int, what: str) -> List[Any]:
    """None / array (N, ...) / list of N / dict {index: value} -> list of N entries (None = unknown)."""
    if value is None:
        return [None] * n
    if isinstance(value, dict):
        out = [None] * n
        for k, v in value.items():
            if not (isinstance(k, (int, np.integer)) and 0 <= int(k) < n):
                raise ValueError(f"{what}: key {k!r} is not an image index in [0, {n})")
            out[int(k)] = v
        return out
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what}: expected {n} entries (one per image), got {len(value)}")
        return list(value)
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float64)
    if arr.ndim == 0 or (what == "known_intrinsics" and arr.shape == (3, 3)):
        return [arr] * n
    if arr.shape[0] != n:
        raise ValueError(f"{what}: expected {n} entries (one per image), got shape {arr.shape}")
    return list(arr)


def _parse_known_intrinsics(value, views: List[dict], space: str, names: List[str]) -> Optional[torch.Tensor]:
    """Known intrinsics -> (N, 3, 3) float64 network-pixel K (NaN rows where unknown). Focal-only entries keep the
    default principal point, the image centre ((W - 1) / 2, (H - 1) / 2)."""
    if space not in ("original", "network"):
        raise ValueError(f"known_intrinsics_space must be 'original' or 'network', got {space!r}")
    entries = _per_image(value, len(views), "known_intrinsics")
    if all(e is None for e in entries):
        return None
    out = torch.full((len(views), 3, 3), float("nan"), dtype=torch.float64)
    for i, e in enumerate(entries):
        if e is None:
            continue
        arr = np.asarray(e.detach().cpu() if isinstance(e, torch.Tensor) else e, dtype=np.float64)
        H, W = views[i]["img"].shape[-2:]
        focal_only = arr.size == 1
        if focal_only:
            K = np.array([[arr.item(), 0, 0], [0, arr.item(), 0], [0, 0, 1.0]])
        elif arr.shape == (3, 3):
            K = arr
        else:
            raise ValueError(f"known_intrinsics for image {names[i]}: expected a focal or a 3x3 matrix, "
                             f"got shape {arr.shape}")
        if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"known_intrinsics for image {names[i]} is not a valid camera matrix: {K.tolist()}")
        if space == "original":
            if view_meta(views[i]) is None:
                raise ValueError(f"known_intrinsics_space='original' but image {names[i]} has no resize metadata "
                                 "(load it with dust3r.utils.image.load_images, or pass network-pixel intrinsics "
                                 "with known_intrinsics_space='network')")
            K = np.asarray(intrinsics_from_original(K, views[i]))
        if focal_only:
            K = np.array([[K[0, 0], 0, (W - 1) / 2], [0, K[1, 1], (H - 1) / 2], [0, 0, 1.0]])
        out[i] = torch.from_numpy(K)
    return out


def _parse_known_poses(value, n: int, names: List[str]) -> Optional[torch.Tensor]:
    entries = _per_image(value, n, "known_poses")
    if all(e is None for e in entries):
        return None
    out = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
    for i, e in enumerate(entries):
        if e is None:
            continue
        arr = np.asarray(e.detach().cpu() if isinstance(e, torch.Tensor) else e, dtype=np.float64)
        if arr.shape == (3, 4):
            arr = np.vstack([arr, [0, 0, 0, 1]])
        if arr.shape != (4, 4) or not np.isfinite(arr).all():
            raise ValueError(f"known_poses for image {names[i]}: expected a finite 4x4 cam2world matrix, "
                             f"got shape {arr.shape}")
        R = arr[:3, :3]
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
            raise ValueError(f"known_poses for image {names[i]}: the 3x3 block is not a rotation")
        out[i] = torch.from_numpy(arr)
    return out


def _from_original_init(init: dict, names: List[str]):
    """The original's ``init={name: {'intrinsics', 'cam2w', 'freeze'}}`` -> (K dict, pose dict, freeze mask)."""
    Ks, poses, freeze = {}, {}, torch.zeros(len(names), dtype=torch.bool)
    for name, values in (init or {}).items():
        if str(name) not in names:
            raise ValueError(f"init: unknown image {name!r}")
        i = names.index(str(name))
        if values.get("intrinsics") is not None:
            Ks[i] = values["intrinsics"]
        if values.get("cam2w") is not None:
            poses[i] = values["cam2w"]
        if values.get("freeze"):
            freeze[i] = True
    return Ks, poses, freeze


# --------------------------------------------------------------------------------------------- entry point
_OPT_KEYS = {f.name for f in fields(OptimOptions)}


def sparse_global_alignment(imgs: Sequence[Any], pairs_in: Sequence, cache_path: Optional[str], model,
                            subsample: int = SPARSE_GA_DEFAULTS["subsample"], desc_conf: str = "desc_conf",
                            kinematic_mode: str = "hclust-ward",
                            device: Any = "cpu", dtype: torch.dtype = torch.float32,
                            shared_intrinsics: bool = SPARSE_GA_DEFAULTS["shared_intrinsics"],
                            known_intrinsics: Any = None, known_intrinsics_space: str = "original",
                            known_poses: Any = None, fix_intrinsics: bool = True, fix_poses: bool = True,
                            init: Optional[dict] = None, min_conf_thr: float = 0.0, canonical_mode: str = "avg-angle",
                            forward_batch_pairs: int = 4, verbose: bool = True, **kw) -> SparseGA:
    """Sparse global alignment of many views with MASt3R (see the module docstring).

    Args:
        imgs: the N images: names (e.g. file paths, as the original) or view dicts; the views of ``pairs_in`` refer
            to them by ``view['idx']`` (an index into ``imgs``) or, failing that, by ``view['instance']``.
        pairs_in: list of (view1, view2) from :func:`dust3r.image_pairs.make_pairs` (symmetric duplicates and
            self-pairs are ignored).
        cache_path: folder for the content-addressed cache (forward outputs, matches, canonical views), or None
            to keep nothing on disk.
        model: a MASt3R model (or anything with its forward interface; None works when everything is cached).
        subsample: anchor grid step (pixels); image sides must be multiples of it.
        desc_conf: which confidence weights the matches ('desc_conf' or 'conf').
        kinematic_mode: 'hclust-ward' (default), other 'hclust-<linkage>', or 'mst'.
        device, dtype: where and in which precision to optimise.
        shared_intrinsics: one focal and principal point for all images.
        known_intrinsics: focal(s) or 3x3 K(s): one for all, an (N, ...) array, a list with None for unknown ones
            or a dict {image index: K or focal}.
        known_intrinsics_space: 'original' (pixels of the original image files; converted with each view's
            load_images metadata) or 'network' (pixels of the network input).
        known_poses: cam2world 4x4 (or 3x4) matrices, same containers as ``known_intrinsics``.
        fix_intrinsics, fix_poses: keep the known values fixed (True) or use them as initialisation (False).
        init: the original's ``{name: {'intrinsics': K (network px), 'cam2w': ..., 'freeze': bool}}``.
        min_conf_thr: matches of confidence not above it are dropped.
        canonical_mode: 'avg-angle' (default) or 'avg-reldepth'.
        forward_batch_pairs: pairs per forward batch.
        **kw: optimiser options (fields of :class:`~mast3r.cloud_opt.optimizer.OptimOptions`): lr1, niter1,
            loss1, lr2, niter2, loss2, lossd, opt_pp, opt_depth, schedule ('cosine' / 'linear' / callable),
            depth_mode, matching_conf_thr, loss_dust3r_w. Their defaults are the original function's,
            :data:`mast3r.cloud_opt.defaults.SPARSE_GA_DEFAULTS` (lr 0.2 / 500 iterations, then lr 0.02 / 500);
            the demo's (lr 0.07 / 500, then 0.014 / 200) are :data:`~mast3r.cloud_opt.defaults.ALIGNMENT_DEFAULTS`.
            The optimisation runs on the caller's torch thread count (see
            :func:`~mast3r.cloud_opt.optimizer.optimize_scene`).

    Returns:
        a :class:`SparseGA`.

    Raises:
        ValueError: bad inputs, a disconnected scene graph (naming the components), non-finite predictions
            (naming the pair), degenerate depth.
    """
    unknown = set(kw) - _OPT_KEYS - {"lora_depth", "exp_depth", "dbg"}
    if unknown:
        raise ValueError(f"unknown sparse_global_alignment option(s) {sorted(unknown)}; accepted: "
                         f"{sorted(_OPT_KEYS)}")
    for ignored in ("lora_depth", "exp_depth", "dbg"):
        if kw.pop(ignored, None):
            logger.warning("option %s is not supported and is ignored", ignored)
    if isinstance(subsample, bool) or not isinstance(subsample, (int, np.integer)) or subsample < 1:
        raise ValueError(f"subsample must be a positive integer, got {subsample!r}")
    if isinstance(kw.get("schedule"), str) and kw["schedule"] not in ("cosine", "linear"):
        raise ValueError(f"unknown schedule {kw['schedule']!r}; expected 'cosine', 'linear' or a callable")
    opts = OptimOptions(shared_intrinsics=shared_intrinsics, verbose=verbose, **kw)

    inputs = _parse_inputs(imgs, pairs_in)
    if len(inputs.names) == 1:
        inputs = _duplicate_single(inputs)
    for i, v in enumerate(inputs.views):
        H, W = v["img"].shape[-2:]
        if H % subsample or W % subsample:
            raise ValueError(f"image {inputs.names[i]} is {W}x{H}: both sides must be multiples of "
                             f"subsample={subsample}")
    n = len(inputs.names)

    # known cameras
    init_K, init_poses, freeze = _from_original_init(init, inputs.names) if init else ({}, {}, None)
    K_known = _parse_known_intrinsics(known_intrinsics, inputs.views, known_intrinsics_space, inputs.names)
    if init_K:
        K_init = _parse_known_intrinsics(init_K, inputs.views, "network", inputs.names)
        K_known = K_init if K_known is None else torch.where(torch.isnan(K_known), K_init, K_known)
    poses_known = _parse_known_poses(known_poses, n, inputs.names)
    if init_poses:
        P_init = _parse_known_poses(init_poses, n, inputs.names)
        poses_known = P_init if poses_known is None else torch.where(torch.isnan(poses_known), P_init, poses_known)

    # 1-3: forward, matches, canonical views
    store = CacheStore(cache_path)
    stage = _ForwardStage(inputs, model, store, subsample, desc_conf, device, canonical_mode, forward_batch_pairs,
                          verbose)
    records, canon = stage.run()
    logger.info("sparse GA: %d pairs (%d through the model)", len(records), stage.n_model_pairs)

    # 4: problem + kinematic tree
    problem = _build_problem(inputs.names, records, canon, subsample, opts.matching_conf_thr, min_conf_thr,
                             kinematic_mode, K_known, device, dtype)

    # 5: optimisation
    K_mask = (~torch.isnan(K_known[:, 0, 0])) if K_known is not None else torch.zeros(n, dtype=torch.bool)
    P_mask = (~torch.isnan(poses_known[:, 0, 0])) if poses_known is not None else torch.zeros(n, dtype=torch.bool)
    prior = CameraPrior(fix_intrinsics=K_mask & bool(fix_intrinsics), fix_poses=P_mask & bool(fix_poses),
                        freeze=freeze)
    if not P_mask.any():
        result = optimize_scene(problem, opts, prior, mode="chain")
    else:
        if P_mask.all():
            init_c2w = poses_known.clone()
        else:
            chain = optimize_scene(problem, opts, CameraPrior(fix_intrinsics=prior.fix_intrinsics, freeze=freeze),
                                   mode="chain")
            sim3 = align_camera_poses(chain.cam2w.cpu(), poses_known, P_mask)
            init_c2w = apply_sim3_to_poses(*sim3, chain.cam2w.cpu().double())
            init_c2w[P_mask] = poses_known[P_mask]
        result = optimize_scene(problem, opts, prior, mode="absolute", init_cam2w=init_c2w.to(device, dtype))
        if fix_poses:
            result.cam2w[P_mask] = poses_known[P_mask].to(result.cam2w)
    if K_known is not None and fix_intrinsics:
        result.intrinsics[K_mask] = K_known[K_mask].to(result.intrinsics)

    return _make_scene(inputs, problem, result, canon, subsample, cache_path)


def _make_scene(inputs: _Inputs, problem: SceneProblem, result: AlignmentResult, canon: List[CanonicalView],
                subsample: int, cache_path: Optional[str]) -> SparseGA:
    n = len(inputs.names)
    img = problem.points.img
    core_img = problem.core_img
    depthmaps = [result.core_depth[core_img == i] for i in range(n)]
    pts3d = [result.pts3d[img == i] for i in range(n)]
    anchor_xy = [problem.points.xy[img == i].cpu() for i in range(n)]
    return SparseGA(inputs.names, [view_to_rgb(v) for v in inputs.views], result.intrinsics, result.cam2w,
                    depthmaps, pts3d, anchor_xy, canon, problem.base_focals, subsample,
                    [view_meta(v) for v in inputs.views], result.losses, cache_path)
