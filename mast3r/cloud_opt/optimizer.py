"""The sparse scene optimiser: cameras and anchor depths fitted to correspondences, in two stages.

Unknowns (per image i, vectorised over images): focal ``f_i`` (log-parameterised, clipped to
``[0.25, 10] x`` the image diagonal), principal point ``pp_i`` (relative to the image size), pose (unit quaternion
``(x, y, z, w)`` + translation), a log-scale ``s_i`` of the predicted depth, and the depths of the anchors
(``core_depth``, normalised by the image's median depth).

* coarse stage (``lr1``, ``niter1``, ``loss1``): 3D distance between the two 3D points of every correspondence;
  only poses and scales move;
* fine stage (``lr2``, ``niter2``, ``loss2``): 2D reprojection error of each correspondence's 3D point in the
  other image; focals, principal points (``opt_pp``) and anchor depths (``opt_depth``) move too.

Pairs whose best match confidence is not above ``matching_conf_thr`` use instead a sparsified DUSt3R regression
loss (the pair's predicted pointmap, weighted by ``loss_dust3r_w``).

Pose parameterisations:

* ``'chain'`` (the original's): poses relative to the parent in the kinematic tree; the translation parameter
  is the point at distance ``z_i = s_i m_i f_i / f0_i`` in front of the camera on its principal axis (so that a
  focal change moves the camera back, not the scene); the whole scene is scaled by ``1 / min_i s_i`` (the
  optimisation would otherwise shrink it);
* ``'absolute'`` (known poses): ``cam2world`` directly, world scale fixed by the given poses.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from dust3r.utils.geometry import quat_to_rotmat, rotmat_to_quat
from dust3r.utils.schedules import get_schedule

from .defaults import SPARSE_GA_DEFAULTS
from .geometry import backproject, project
from .kinematic import KinematicTree
from .utils.losses import gamma_loss, is_meta_loss

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- problem data
@dataclass
class PointSet:
    """3D points carried by anchors: P points of all images, flattened.

    ``img`` (P,) image index; ``xy`` (P, 2) float pixels; ``core`` (P,) index into the concatenated anchor
    depths of all images; ``offset`` (P,) relative depth w.r.t. the anchor (1 at the anchor itself)."""
    img: torch.Tensor
    xy: torch.Tensor
    core: torch.Tensor
    offset: torch.Tensor

    def to(self, device, dtype) -> "PointSet":
        return PointSet(self.img.to(device), self.xy.to(device, dtype), self.core.to(device),
                        self.offset.to(device, dtype))


@dataclass
class MatchSet:
    """Correspondences between points ``a`` and ``b`` (indices into a PointSet) with confidences (M,)."""
    a: torch.Tensor
    b: torch.Tensor
    conf: torch.Tensor

    def to(self, device, dtype) -> "MatchSet":
        return MatchSet(self.a.to(device), self.b.to(device), self.conf.to(device, dtype))


@dataclass
class RegressionSet:
    """DUSt3R fallback: anchor points ``points`` of image ``img1`` must land on ``target`` (Q, 3), their position
    predicted in the frame of camera ``cam`` (Q,), weighted by ``conf`` (Q,)."""
    points: PointSet
    cam: torch.Tensor
    target: torch.Tensor
    conf: torch.Tensor

    def to(self, device, dtype) -> "RegressionSet":
        return RegressionSet(self.points.to(device, dtype), self.cam.to(device), self.target.to(device, dtype),
                             self.conf.to(device, dtype))


@dataclass
class SceneProblem:
    """Everything the optimiser needs (see module docstring). N images."""
    imsizes: torch.Tensor         # (N, 2) (W, H)
    base_focals: torch.Tensor     # (N,) focal of the canonical pointmaps (or the known focal)
    pps: torch.Tensor             # (N, 2) initial principal points in pixels
    core_depth: torch.Tensor      # (A,) anchor depths of all images (camera z), concatenated
    core_img: torch.Tensor        # (A,) image of each anchor
    points: PointSet              # correspondence points
    matches: MatchSet             # correspondences used by the losses (pairs passing matching_conf_thr)
    regression: Optional[RegressionSet]
    tree: KinematicTree

    @property
    def n_imgs(self) -> int:
        return int(self.imsizes.shape[0])


@dataclass
class CameraPrior:
    """Known cameras. ``intrinsics`` (N, 3, 3) network pixels with NaN rows for unknown ones; ``cam2w`` (N, 4, 4)
    NaN where unknown; ``fix_*`` (N,) bool masks of parameters to keep fixed; ``freeze`` (N,) bool masks of
    images whose every parameter is frozen (the original's ``init[img]['freeze']``)."""
    intrinsics: Optional[torch.Tensor] = None
    cam2w: Optional[torch.Tensor] = None
    fix_intrinsics: Optional[torch.Tensor] = None
    fix_poses: Optional[torch.Tensor] = None
    freeze: Optional[torch.Tensor] = None


_D = SPARSE_GA_DEFAULTS


@dataclass
class OptimOptions:
    """Options of :func:`optimize_scene`; the defaults are :data:`mast3r.cloud_opt.defaults.SPARSE_GA_DEFAULTS`
    (the original ``sparse_global_alignment``'s; the demo starts from ``ALIGNMENT_DEFAULTS`` instead)."""
    lr1: float = _D["lr1"]
    niter1: int = _D["niter1"]
    loss1: Callable = field(default_factory=lambda: gamma_loss(1.1))
    lr2: float = _D["lr2"]
    niter2: int = _D["niter2"]
    loss2: Callable = field(default_factory=lambda: gamma_loss(0.4))
    lossd: Callable = field(default_factory=lambda: gamma_loss(1.1))
    opt_pp: bool = _D["opt_pp"]
    opt_depth: bool = _D["opt_depth"]
    schedule: object = _D["schedule"]
    depth_mode: str = _D["depth_mode"]
    shared_intrinsics: bool = _D["shared_intrinsics"]
    matching_conf_thr: float = _D["matching_conf_thr"]
    loss_dust3r_w: float = _D["loss_dust3r_w"]
    verbose: bool = True


@dataclass
class AlignmentResult:
    """Output of :func:`optimize_scene`: ``intrinsics`` (N, 3, 3), ``cam2w`` (N, 4, 4), ``core_depth`` (A,) (camera
    z of every anchor), ``pts3d`` (P, 3) world points of the PointSet, ``final_loss`` per stage."""
    intrinsics: torch.Tensor
    cam2w: torch.Tensor
    core_depth: torch.Tensor
    pts3d: torch.Tensor
    losses: Dict[str, float]


# --------------------------------------------------------------------------------------------- parameters
class SceneParams(torch.nn.Module):
    """Learnable parameters, one row per image (shared intrinsics: one row for all)."""

    def __init__(self, problem: SceneProblem, mode: str, shared_intrinsics: bool, depth_mode: str,
                 init_cam2w: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        if depth_mode not in ("add", "mul"):
            raise ValueError(f"bad depth_mode={depth_mode!r}: expected 'add' or 'mul'")
        if mode not in ("chain", "absolute"):
            raise ValueError(f"bad pose mode {mode!r}")
        p = problem
        N = p.n_imgs
        dtype, device = p.core_depth.dtype, p.core_depth.device
        self.mode, self.depth_mode, self.tree, self.shared = mode, depth_mode, p.tree, shared_intrinsics
        self.register_buffer("imsizes", p.imsizes.to(dtype))
        self.register_buffer("base_focals", p.base_focals.clone())
        self.register_buffer("core_img", p.core_img)
        diags = self.imsizes.norm(dim=1)
        self.register_buffer("min_focals", 0.25 * diags)
        self.register_buffer("max_focals", 10 * diags)
        # median depth per image normalises the anchor depths
        med = torch.stack([p.core_depth[p.core_img == i].median() for i in range(N)])
        self.register_buffer("median_depths", med)
        pp_rel = p.pps / self.imsizes
        if shared_intrinsics:
            pp_rel = pp_rel.mean(0, keepdim=True)
            log_f = self.base_focals.log().mean().view(1)
        else:
            log_f = self.base_focals.log()
        self.log_focals = torch.nn.Parameter(log_f.clone())
        self.pps = torch.nn.Parameter(pp_rel.clone())
        self.core_depth = torch.nn.Parameter(p.core_depth / med[p.core_img])
        self.log_sizes = torch.nn.Parameter(torch.zeros(N, dtype=dtype, device=device))
        quats = torch.zeros(N, 4, dtype=dtype, device=device)
        quats[:, 3] = 1
        trans = torch.zeros(N, 3, dtype=dtype, device=device)
        if mode == "absolute":
            if init_cam2w is None:
                raise ValueError("absolute pose mode needs initial poses")
            quats = rotmat_to_quat(init_cam2w[:, :3, :3].to(dtype))
            trans = init_cam2w[:, :3, 3].to(dtype).clone()
        self.quats = torch.nn.Parameter(quats)
        self.trans = torch.nn.Parameter(trans)

    # ------------------------------------------------------------------ composition
    def focals(self) -> torch.Tensor:
        f = self.log_focals.exp()
        if self.shared:
            f = f.expand(len(self.imsizes))
        return f.clip(min=self.min_focals, max=self.max_focals)

    def pps_px(self) -> torch.Tensor:
        pp = self.pps.expand(len(self.imsizes), 2) if self.shared else self.pps
        return pp * self.imsizes

    def intrinsics(self) -> torch.Tensor:
        f, pp = self.focals(), self.pps_px()
        K = torch.zeros(len(f), 3, 3, dtype=f.dtype, device=f.device)
        K[:, 0, 0] = K[:, 1, 1] = f
        K[:, :2, 2] = pp
        K[:, 2, 2] = 1
        return K

    def _chain_cam2w(self, rel: torch.Tensor) -> torch.Tensor:
        """Compose relative poses (N, 4, 4) along the tree: cam2w[child] = cam2w[parent] @ rel[child]."""
        poses: List[Optional[torch.Tensor]] = [None] * len(rel)
        poses[self.tree.root] = rel[self.tree.root]
        for parent, child in self.tree.edges:
            poses[child] = poses[parent] @ rel[child]
        return torch.stack(poses)

    def cameras_and_depths(self):
        """-> ``(K (N, 3, 3), cam2w (N, 4, 4), core depth (A,) in camera z)``."""
        K = self.intrinsics()
        f, pp = K[:, 0, 0], K[:, :2, 2]
        sizes = self.log_sizes.exp()
        z_cam = sizes * self.median_depths * f / self.base_focals
        rot = quat_to_rotmat(self.quats)
        N = len(f)
        if self.mode == "chain":
            scale = 1 / sizes.min()
            rel = torch.eye(4, dtype=f.dtype, device=f.device).repeat(N, 1, 1)
            rel[:, :3, :3] = rot
            rel[:, :3, 3] = self.trans
            chain = self._chain_cam2w(rel)
            rot = chain[:, :3, :3]
            # the translation parameter is the point z_cam in front of the camera on the principal ray
            offset = torch.cat(((self.imsizes / 2 - pp) / f[:, None], torch.ones_like(f[:, None])), dim=1)
            offset = offset * z_cam[:, None]
            centres = scale * (chain[:, :3, 3] - (rot @ offset[:, :, None])[:, :, 0])
        else:
            scale = torch.ones((), dtype=f.dtype, device=f.device)
            centres = self.trans
        cam2w = torch.eye(4, dtype=f.dtype, device=f.device).repeat(N, 1, 1)
        cam2w[:, :3, :3] = rot
        cam2w[:, :3, 3] = centres
        img = self.core_img
        if self.depth_mode == "add":
            depth = z_cam[img] + (self.core_depth - 1) * (self.median_depths[img] * sizes[img])
        else:
            depth = z_cam[img] * self.core_depth
        return K, cam2w, scale * depth


def make_points(points: PointSet, K: torch.Tensor, cam2w: torch.Tensor, core_depth: torch.Tensor,
                base_focals: Optional[torch.Tensor] = None, ret_depth: bool = False,
                groups: Optional["ImageGroups"] = None):
    """World points (P, 3) of a PointSet: anchor depth x offset (the offset's relief rescaled by
    ``base_focal / focal`` when ``base_focals`` is given), back-projected and moved to the world frame.
    ``groups``: :meth:`ImageGroups.of` ``points.img`` when the points are sorted by image (faster)."""
    img = points.img
    f, pp = K[img, 0, 0], K[img, :2, 2]
    offset = points.offset
    if base_focals is not None:
        offset = 1 + (offset - 1) * (base_focals[img] / f)
    depth = core_depth[points.core] * offset
    pts_cam = backproject(points.xy, depth, f, pp)
    pts = groups.apply(cam2w, pts_cam) if groups is not None else _rigid_apply(cam2w[img], pts_cam)
    return (pts, depth) if ret_depth else pts


@dataclass
class ImageGroups:
    """P entries sorted by image (``counts[i]`` entries for image i), to move them with one rigid transform per
    image without gathering a 4x4 matrix per entry. ``pos`` (P,) is each entry's rank within its image. When the
    images hold similar numbers of entries (zero padding at most 4x the entries), the transforms are one batched
    matmul on a padded (N, max_count, 3) buffer, else one matmul per image."""
    img: torch.Tensor
    pos: torch.Tensor
    counts: List[int]
    padded: bool

    @classmethod
    def of(cls, img: torch.Tensor, n_imgs: int) -> Optional["ImageGroups"]:
        """The groups of ``img`` (P,), or None when it is not sorted (non-decreasing)."""
        if img.numel() > 1 and bool((img[1:] < img[:-1]).any()):
            return None
        counts_t = torch.bincount(img, minlength=n_imgs)
        starts = torch.cumsum(counts_t, 0) - counts_t
        counts = counts_t.tolist()
        padded = n_imgs * max(counts + [0]) <= 4 * max(len(img), 1)
        return cls(img, torch.arange(len(img), device=img.device) - starts[img], counts, padded)

    def apply(self, T: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Rigid transforms ``T`` (N, 4, 4) applied to the points (P, 3) of each image -> (P, 3)."""
        if self.padded:
            buf = pts.new_zeros(len(self.counts), max(self.counts), 3).index_put((self.img, self.pos), pts)
            out = torch.baddbmm(T[:, None, :3, 3], buf, T[:, :3, :3].transpose(1, 2))
            return out[self.img, self.pos]
        parts = [p @ T[i, :3, :3].T + T[i, :3, 3] for i, p in enumerate(pts.split(self.counts)) if len(p)]
        return torch.cat(parts) if parts else pts.new_zeros(0, 3)


def _rigid_apply(T: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Per-point rigid transforms (P, 4, 4) applied to (P, 3) points (elementwise: faster than tiny bmm)."""
    return (T[:, :3, :3] * pts[:, None, :]).sum(-1) + T[:, :3, 3]


def _rigid_inverse(T: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) rigid transforms -> their inverses (closed form)."""
    R_t = T[:, :3, :3].transpose(1, 2)
    out = torch.zeros_like(T)
    out[:, :3, :3] = R_t
    out[:, :3, 3] = -(R_t * T[:, None, :3, 3]).sum(-1)
    out[:, 3, 3] = 1
    return out


# --------------------------------------------------------------------------------------------- losses
def loss_3d(pts: torch.Tensor, matches: MatchSet, pix_loss) -> torch.Tensor:
    if matches.conf.numel() == 0:
        return pts.sum() * 0
    return (matches.conf @ pix_loss(pts[matches.a], pts[matches.b])) / matches.conf.sum()


@dataclass
class ReprojectionTerms:
    """The 2D terms of the fine stage, built once: the 3D point ``src`` (R,) must project onto the pixel ``xy``
    (R, 2) of image ``cam`` (R,), weight ``conf`` (R,); sorted by ``cam`` (``groups``)."""
    src: torch.Tensor
    xy: torch.Tensor
    cam: torch.Tensor
    conf: torch.Tensor
    groups: ImageGroups

    @classmethod
    def build(cls, points: PointSet, matches: MatchSet, n_imgs: int,
              skip_img: Optional[torch.Tensor] = None) -> "ReprojectionTerms":
        """Both directions of every correspondence; the terms observed in a ``skip_img`` image are dropped."""
        obs = torch.cat((matches.a, matches.b))        # observed pixel
        src = torch.cat((matches.b, matches.a))        # 3D point seen there
        conf = torch.cat((matches.conf, matches.conf))
        cam = points.img[obs]
        if skip_img is not None and skip_img.any():
            keep = ~skip_img[cam]
            obs, src, conf, cam = obs[keep], src[keep], conf[keep], cam[keep]
        order = torch.argsort(cam, stable=True)
        obs, src, conf, cam = obs[order], src[order], conf[order], cam[order]
        return cls(src, points.xy[obs], cam, conf, ImageGroups.of(cam, n_imgs))


def loss_2d(pts: torch.Tensor, terms: ReprojectionTerms, K: torch.Tensor, cam2w: torch.Tensor,
            pix_loss) -> torch.Tensor:
    """Confidence-weighted reprojection error (see :class:`ReprojectionTerms`) of the world points ``pts``."""
    if terms.conf.numel() == 0:
        return pts.sum() * 0
    world2cam = _rigid_inverse(cam2w)
    pts_cam = terms.groups.apply(world2cam, pts[terms.src])
    uv = project(pts_cam, K[terms.cam, 0, 0], K[terms.cam, :2, 2])
    return (terms.conf @ pix_loss(terms.xy, uv)) / terms.conf.sum()


def loss_regression(reg: Optional[RegressionSet], K, cam2w, core_depth, pix_loss) -> torch.Tensor:
    if reg is None or reg.conf.numel() == 0:
        return core_depth.sum() * 0
    pts = make_points(reg.points, K, cam2w, core_depth)
    target = _rigid_apply(cam2w[reg.cam], reg.target)
    return (reg.conf @ pix_loss(pts, target)) / reg.conf.sum()


# --------------------------------------------------------------------------------------------- loop
def _row_mask_hook(mask: torch.Tensor):
    """Gradient hook zeroing the rows of frozen images."""
    def hook(grad):
        return grad * mask.view(-1, *([1] * (grad.ndim - 1))).to(grad.dtype)
    return hook


def _set_trainable(params: SceneParams, trainable: Dict[str, torch.Tensor]) -> List:
    """Mark parameters trainable; ``trainable[name]`` is a per-row bool mask (None -> frozen). Returns hooks."""
    handles = []
    for name, p in params.named_parameters():
        mask = trainable.get(name)
        if mask is None or not bool(mask.any()):
            p.requires_grad_(False)
            continue
        p.requires_grad_(True)
        if not bool(mask.all()):
            handles.append(p.register_hook(_row_mask_hook(mask)))
    return handles


class _Adam:
    """Plain Adam (same update as ``torch.optim.Adam`` without weight decay), kept local to avoid the one-off cost
    of torch.optim's compile machinery on first use."""

    def __init__(self, params: List[torch.Tensor], betas=(0.9, 0.9), eps: float = 1e-8) -> None:
        self.params, (self.b1, self.b2), self.eps = params, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, v.sqrt().div_(math.sqrt(bc2)).add_(self.eps), value=-lr / bc1)


def _run_stage(params: SceneParams, stage_loss: Callable, lr_base: float, niter: int, pix_loss, schedule,
               regression: Optional[RegressionSet], loss_dust3r_w: float, lossd, verbose: bool,
               name: str) -> float:
    """Adam (betas 0.9, 0.9) with a scheduled learning rate; returns the last loss."""
    trainable = [p for p in params.parameters() if p.requires_grad]
    if niter <= 0 or not trainable:
        return float("nan")
    optimizer = _Adam(trainable, betas=(0.9, 0.9))
    meta = is_meta_loss(pix_loss)
    last = float("nan")
    bar = tqdm(range(niter), desc=f"sparse GA ({name})", disable=not verbose, leave=False)
    for it in bar:
        alpha = it / niter
        lr = schedule(alpha, lr_base, 0.0)
        loss_fn = pix_loss(1 - alpha) if meta else pix_loss
        K, cam2w, depth = params.cameras_and_depths()
        loss = stage_loss(K, cam2w, depth, loss_fn)
        if loss_dust3r_w and regression is not None:
            loss = loss + loss_dust3r_w * loss_regression(regression, K, cam2w, depth, lossd)
        value = float(loss.detach())
        if not math.isfinite(value):
            logger.warning("sparse GA %s stage: the loss became %s at iteration %d; stopping this stage",
                           name, value, it)
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(lr)
        with torch.no_grad():
            params.quats.data = torch.nn.functional.normalize(params.quats.data, dim=1)
        last = value
        if verbose and it % 20 == 0:
            bar.set_postfix_str(f"lr={lr:.4f} loss={value:.4f}")
    logger.info("sparse GA %s stage: final loss %.6f", name, last)
    return last


def optimize_scene(problem: SceneProblem, opts: OptimOptions, prior: Optional[CameraPrior] = None,
                   mode: str = "chain", init_cam2w: Optional[torch.Tensor] = None) -> AlignmentResult:
    """Run the coarse (3D) then fine (2D) stages on ``problem`` (see the module docstring).

    Threads: the per-iteration tensors of small problems are tiny, and on CPU intra-op threading can make them
    several times slower on a loaded machine. The thread count is the caller's choice (``torch.set_num_threads``
    is process-wide, so this function never changes it): a CLI may set 1-2 threads for small scenes; a server
    should do it once at start-up, not per request.
    """
    prior = prior or CameraPrior()
    N = problem.n_imgs
    device = problem.core_depth.device
    params = SceneParams(problem, mode, opts.shared_intrinsics, opts.depth_mode, init_cam2w).to(device)
    schedule = get_schedule(opts.schedule)

    def rows(mask):
        return torch.zeros(N, dtype=torch.bool, device=device) if mask is None else mask.to(device).bool()

    freeze = rows(prior.freeze)
    fix_pose = rows(prior.fix_poses) | freeze
    fix_intr = rows(prior.fix_intrinsics) | freeze
    free = ~freeze
    intr_rows = (~fix_intr).any().view(1) if opts.shared_intrinsics else ~fix_intr
    skip_2d = freeze  # the original skips the reprojection terms of frozen images

    # matches between two frozen images carry no information
    m = problem.matches
    both_frozen = freeze[problem.points.img[m.a]] & freeze[problem.points.img[m.b]]
    matches = MatchSet(m.a[~both_frozen], m.b[~both_frozen], m.conf[~both_frozen]) if both_frozen.any() else m

    groups = ImageGroups.of(problem.points.img, N)
    reproj = ReprojectionTerms.build(problem.points, matches, N, skip_2d)

    def stage3d(K, cam2w, depth, pix_loss):
        pts = make_points(problem.points, K, cam2w, depth, params.base_focals, groups=groups)
        return loss_3d(pts, matches, pix_loss)

    def stage2d(K, cam2w, depth, pix_loss):
        pts = make_points(problem.points, K, cam2w, depth, params.base_focals, groups=groups)
        return loss_2d(pts, reproj, K, cam2w, pix_loss)

    anchors_free = free[problem.core_img]
    losses = {}
    # coarse: poses and scales only (in absolute mode the given/aligned poses stay put: only the scales move)
    pose_rows = ~fix_pose if mode == "chain" else torch.zeros(N, dtype=torch.bool, device=device)
    hooks = _set_trainable(params, {"quats": pose_rows, "trans": pose_rows, "log_sizes": free})
    losses["coarse"] = _run_stage(params, stage3d, opts.lr1, opts.niter1, opts.loss1, schedule, problem.regression,
                                  opts.loss_dust3r_w, opts.lossd, opts.verbose, "coarse")
    for h in hooks:
        h.remove()
    if opts.niter2 > 0:
        trainable = {"quats": ~fix_pose, "trans": ~fix_pose, "log_sizes": free, "log_focals": intr_rows,
                     "pps": intr_rows if opts.opt_pp else None,
                     "core_depth": anchors_free if opts.opt_depth else None}
        hooks = _set_trainable(params, trainable)
        losses["fine"] = _run_stage(params, stage2d, opts.lr2, opts.niter2, opts.loss2, schedule,
                                    problem.regression, opts.loss_dust3r_w, opts.lossd, opts.verbose, "fine")
        for h in hooks:
            h.remove()
    with torch.no_grad():
        K, cam2w, depth = params.cameras_and_depths()
        pts = make_points(problem.points, K, cam2w, depth, params.base_focals, groups=groups)
    return AlignmentResult(K.detach(), cam2w.detach(), depth.detach(), pts.detach(), losses)
