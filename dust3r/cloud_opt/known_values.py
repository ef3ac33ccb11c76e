"""Preset (known) camera values of the dense aligners: poses, focals, principal points, intrinsics.

Known values live in buffers (``_known_poses`` (N, 4, 4), ``_known_focals`` (N, 1|2), ``_known_pp`` (N, 2) and
their boolean masks); the getters return them instead of the optimised parameters for the masked images, so
they hold exactly during optimisation and those rows receive no gradient. Subclasses provide the raw values
(``_raw_im_poses`` ...) and the writers that keep their parameters in sync (``_write_pose`` ...).
"""
from __future__ import annotations

import logging
from typing import List

import numpy as np
import torch

from ..utils.image import intrinsics_from_original

logger = logging.getLogger(__name__)

__all__ = ["KnownCamerasMixin"]


class KnownCamerasMixin:
    """Preset API and camera getters shared by every aligner with per-image cameras (needs ``n_imgs``,
    ``device``, ``views_meta``, ``has_im_poses`` and ``norm_pw_scale`` on the host class)."""

    def _init_known_buffers(self, focal_dim: int = 1) -> None:
        """Buffers of preset camera values (called by subclasses that have image poses)."""
        N = self.n_imgs
        self.register_buffer("_known_pose_msk", torch.zeros(N, dtype=torch.bool))
        self.register_buffer("_known_poses", torch.eye(4).repeat(N, 1, 1))
        self.register_buffer("_known_focal_msk", torch.zeros(N, dtype=torch.bool))
        self.register_buffer("_known_focals", torch.ones(N, focal_dim))
        self.register_buffer("_known_pp_msk", torch.zeros(N, dtype=torch.bool))
        self.register_buffer("_known_pp", torch.zeros(N, 2))

    def _get_msk_indices(self, msk) -> List[int]:
        """Image indices selected by ``msk``: None (all), int, list/array of ints, or boolean mask of length N."""
        if msk is None:
            return list(range(self.n_imgs))
        if isinstance(msk, (int, np.integer)) and not isinstance(msk, bool):
            idx = [int(msk)]
        else:
            arr = msk.detach().cpu().numpy() if isinstance(msk, torch.Tensor) else np.asarray(msk)
            arr = arr.reshape(-1)
            if arr.dtype == np.bool_:
                if len(arr) != self.n_imgs:
                    raise ValueError(f"boolean mask has {len(arr)} entries, expected one per image ({self.n_imgs})")
                idx = np.flatnonzero(arr).tolist()
            elif np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
                idx = [int(v) for v in arr]
            else:
                raise ValueError(f"bad mask {msk!r}: expected None, an int, integer indices or a boolean mask")
        bad = [i for i in idx if not 0 <= i < self.n_imgs]
        if bad:
            raise ValueError(f"image indices {bad} out of range [0, {self.n_imgs})")
        if len(set(idx)) != len(idx):
            raise ValueError(f"duplicate image indices in mask: {idx}")
        return idx

    @staticmethod
    def _as_list(values, per_item_ndim: int, name: str) -> List[torch.Tensor]:
        """A stacked array/tensor (K, ...), a single item (...) or a list of items -> list of float64 tensors."""
        if isinstance(values, (torch.Tensor, np.ndarray)):
            t = torch.as_tensor(np.asarray(values) if isinstance(values, np.ndarray) else values.detach().cpu())
            if t.ndim == per_item_ndim:
                t = t[None]
            return [x.to(torch.float64) for x in t]
        try:
            return [torch.as_tensor(np.asarray(v, dtype=np.float64)) if not isinstance(v, torch.Tensor)
                    else v.detach().cpu().to(torch.float64) for v in values]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot read {name}: {exc}") from exc

    @staticmethod
    def _focal_list(known_focals) -> List[torch.Tensor]:
        """Scalar, (K,), (K, 1|2) or list of f / (fx, fy) -> list of 1-D float64 tensors."""
        if isinstance(known_focals, torch.Tensor):
            known_focals = known_focals.detach().cpu().numpy()
        if np.ndim(known_focals) == 0 and not isinstance(known_focals, (list, tuple)):
            known_focals = [known_focals]
        try:
            if isinstance(known_focals, np.ndarray) and known_focals.ndim == 1:
                return [torch.tensor([float(f)], dtype=torch.float64) for f in known_focals]
            return [torch.as_tensor(np.asarray(f.detach().cpu() if isinstance(f, torch.Tensor) else f,
                                               dtype=np.float64).reshape(-1)) for f in known_focals]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot read known_focals: {exc}") from exc

    def _match_values(self, values: List[torch.Tensor], idx: List[int], name: str) -> None:
        if len(values) != len(idx):
            raise ValueError(f"{len(values)} {name} given for {len(idx)} selected images {idx}")
        for k, v in zip(idx, values):
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"{name} for image {k} is not finite: {v.tolist()}")

    def _require_im_poses(self, what: str) -> None:
        if not self.has_im_poses:
            raise NotImplementedError(f"{type(self).__name__} has no per-image cameras: {what} is not supported")

    def preset_pose(self, known_poses, pose_msk=None, verbose: bool = False) -> None:
        """Fix the cam2world poses (OpenCV axes) of some images; they hold exactly during optimisation.

        Args:
            known_poses: (K, 4, 4) / list of K 4x4 poses (a single 4x4 is accepted), tensor or numpy.
            pose_msk: which images they belong to (None: all, int, indices, boolean mask).
        """
        self._require_im_poses("preset_pose")
        idx = self._get_msk_indices(pose_msk)
        poses = self._as_list(known_poses, 2, "known_poses")
        self._match_values(poses, idx, "known poses")
        for k, pose in zip(idx, poses):
            if tuple(pose.shape) not in ((4, 4), (3, 4)):
                raise ValueError(f"known pose for image {k} must be 4x4 (or 3x4), got shape {tuple(pose.shape)}")
            R = pose[:3, :3]
            if not torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-3) or float(torch.det(R)) < 0:
                raise ValueError(f"known pose for image {k} has no proper rotation part (cam2world must be rigid)")
            full = torch.eye(4, dtype=torch.float64)
            full[:3] = pose[:3]
            if verbose:
                logger.info(" (setting pose #%d = %s)", k, full[:3, 3].tolist())
            self._known_poses[k] = full.to(self._known_poses)
            self._known_pose_msk[k] = True
            self._write_pose(k, full.to(self.device))
        self.norm_pw_scale = int(self._known_pose_msk.sum()) <= 1
        self._update_trainable()

    def preset_focal(self, known_focals, msk=None, verbose: bool = False) -> None:
        """Fix the focals (pixels of the network input) of some images: K values, each f or (fx, fy)."""
        self._require_im_poses("preset_focal")
        idx = self._get_msk_indices(msk)
        focals = self._focal_list(known_focals)
        self._match_values(focals, idx, "known focals")
        dim = self._known_focals.shape[1]
        for k, f in zip(idx, focals):
            if f.numel() not in (1, 2) or bool((f <= 0).any()):
                raise ValueError(f"known focal for image {k} must be a positive f or (fx, fy), got {f.tolist()}")
            value = f.expand(dim) if f.numel() == 1 else (f if dim == 2 else f.mean().reshape(1))
            if verbose:
                logger.info(" (setting focal #%d = %s)", k, value.tolist())
            self._known_focals[k] = value.to(self._known_focals)
            self._known_focal_msk[k] = True
            self._write_focal(k, value)
        self._update_trainable()

    def preset_principal_point(self, known_pp, msk=None, verbose: bool = False) -> None:
        """Fix the principal points (x, y) in pixels of the network input of some images."""
        self._require_im_poses("preset_principal_point")
        idx = self._get_msk_indices(msk)
        pps = self._as_list(known_pp, 1, "known_pp")
        self._match_values(pps, idx, "known principal points")
        for k, pp in zip(idx, pps):
            if pp.numel() != 2:
                raise ValueError(f"known principal point for image {k} must be (x, y), got {pp.tolist()}")
            if verbose:
                logger.info(" (setting principal point #%d = %s)", k, pp.tolist())
            self._known_pp[k] = pp.reshape(2).to(self._known_pp)
            self._known_pp_msk[k] = True
            self._write_pp(k, pp.reshape(2))
        self._update_trainable()

    def preset_intrinsics(self, known_intrinsics, msk=None, original: bool = False) -> None:
        """Fix focal and principal point from 3x3 intrinsics.

        Args:
            known_intrinsics: (K, 3, 3) or list of 3x3 matrices (OpenCV convention).
            msk: which images (see :meth:`preset_pose`).
            original: the matrices are in pixels of the ORIGINAL images; they are converted to network pixels
                with each view's resize/crop record (``views_meta``, from ``load_images``).
        """
        self._require_im_poses("preset_intrinsics")
        idx = self._get_msk_indices(msk)
        Ks = self._as_list(known_intrinsics, 2, "known_intrinsics")
        self._match_values(Ks, idx, "known intrinsics")
        for k, K in zip(idx, Ks):
            if tuple(K.shape) != (3, 3):
                raise ValueError(f"intrinsics for image {k} must be 3x3, got shape {tuple(K.shape)}")
        if original:
            missing = [k for k in idx if self.views_meta[k] is None]
            if missing:
                raise ValueError(f"original=True needs the resize metadata of load_images, missing for images "
                                 f"{missing}")
            Ks = [torch.as_tensor(intrinsics_from_original(K.numpy(), self.views_meta[k])) for k, K in zip(idx, Ks)]
        dim = self._known_focals.shape[1]
        focals = [K.diagonal()[:2] if dim == 2 else K.diagonal()[:2].mean().reshape(1) for K in Ks]
        self.preset_focal(focals, idx)
        self.preset_principal_point([K[:2, 2] for K in Ks], idx)

    def get_known_pose_mask(self) -> torch.Tensor:
        return self._known_pose_msk.clone()

    def get_known_focal_mask(self) -> torch.Tensor:
        return self._known_focal_msk.clone()

    def get_known_pp_mask(self) -> torch.Tensor:
        return self._known_pp_msk.clone()

    # hooks implemented by subclasses with image cameras ---------------------------------------------------
    def _write_pose(self, idx: int, cam2world: torch.Tensor) -> None:
        raise NotImplementedError

    def _write_focal(self, idx: int, focal: torch.Tensor) -> None:
        raise NotImplementedError

    def _write_pp(self, idx: int, pp: torch.Tensor) -> None:
        raise NotImplementedError

    def _update_trainable(self) -> None:
        """Stop optimising parameters whose every value is preset."""

    # original setter names (used by the initialisation and by callers of the original API) -----------------
    def _set_focal(self, idx: int, focal, force: bool = False):
        self._write_focal(idx, torch.as_tensor(focal))
        return self.im_focals[idx]

    def _set_principal_point(self, idx: int, pp, force: bool = False):
        pp = pp if isinstance(pp, torch.Tensor) else torch.as_tensor(np.asarray(pp, dtype=np.float64))
        self._write_pp(idx, pp)
        return self.im_pp[idx]

    def _raw_im_poses(self) -> torch.Tensor:
        raise NotImplementedError

    def _raw_focals(self) -> torch.Tensor:
        raise NotImplementedError

    def _raw_principal_points(self) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ getters
    def get_im_poses(self) -> torch.Tensor:
        """(N, 4, 4) cam2world poses (preset ones exactly as given)."""
        raw = self._raw_im_poses()
        return torch.where(self._known_pose_msk[:, None, None], self._known_poses, raw)

    def get_focals(self) -> torch.Tensor:
        """(N, 1) focals in network pixels ((N, 2) for fx_and_fy)."""
        raw = self._raw_focals()
        return torch.where(self._known_focal_msk[:, None], self._known_focals, raw)

    def get_principal_points(self) -> torch.Tensor:
        """(N, 2) principal points (x, y) in network pixels."""
        raw = self._raw_principal_points()
        return torch.where(self._known_pp_msk[:, None], self._known_pp, raw)

    def get_intrinsics(self) -> torch.Tensor:
        """(N, 3, 3) intrinsics in network pixels."""
        focals = self.get_focals().reshape(self.n_imgs, -1)
        K = torch.zeros((self.n_imgs, 3, 3), device=focals.device, dtype=focals.dtype)
        K[:, 0, 0] = focals[:, 0]
        K[:, 1, 1] = focals[:, -1]
        K[:, :2, 2] = self.get_principal_points()
        K[:, 2, 2] = 1
        return K
