"""An oracle model that also answers for crops (and homography warps) of its scene's renderings, as the
coarse-to-fine localization produces them: a batched view carrying ``to_orig`` (B, 3, 3) (crop pixels -> render
pixels, OpenCV convention) is identified among the renderings warped by that transform, and its ground truth
is ray cast through ``inv(K) @ to_orig``."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import torch

from dust3r.synthetic import OracleModel
from dust3r.synthetic.render import cast_rays


class CropOracle(OracleModel):
    """:class:`OracleModel` with ``patch_embed.img_size = (maxdim, maxdim)`` and crop support."""

    def __init__(self, scene, maxdim: int = 128, **kw: Any):
        super().__init__(scene, **kw)
        self.patch_embed.img_size = (maxdim, maxdim)
        self.crop_calls = 0

    def _identify_crop(self, img: torch.Tensor, H: np.ndarray) -> int:
        import cv2

        h, w = img.shape[-2:]
        target = img.detach().cpu().numpy().transpose(1, 2, 0)
        diffs = []
        for n in range(self.n_views):
            render = self.scene.images[n].astype(np.float32) / 127.5 - 1.0
            warped = cv2.warpPerspective(render, H, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            diffs.append(np.abs(warped - target).mean())
        if min(diffs) > 0.1:
            raise ValueError(f"CropOracle: crop matches no rendering (mean abs difference {min(diffs):.3f})")
        return int(np.argmin(diffs))

    def _crop_world(self, n: int, H: np.ndarray, h: int, w: int) -> torch.Tensor:
        K = np.linalg.inv(H) @ np.asarray(self.scene.K[n], np.float64)
        return torch.from_numpy(cast_rays(K, np.asarray(self.scene.cam2world[n]), w, h, self.scene.objects)[1])

    @torch.no_grad()
    def forward(self, view1: Dict[str, Any], view2: Dict[str, Any]) -> Tuple[dict, dict]:
        if "to_orig" not in view1:
            return super().forward(view1, view2)
        self.crop_calls += 1
        preds = []
        idx1 = None
        for view in (view1, view2):
            imgs, trfs = view["img"], view["to_orig"]
            h, w = imgs.shape[-2:]
            Hs = [np.asarray(t, dtype=np.float64) for t in trfs]
            idx = [self._identify_crop(imgs[b], Hs[b]) for b in range(imgs.shape[0])]
            idx1 = idx if idx1 is None else idx1
            world = torch.stack([self._crop_world(n, Hb, h, w) for n, Hb in zip(idx, Hs)])
            w2c = self.world2cam[torch.tensor(idx1)].to(torch.float64).cpu()
            pts = torch.einsum("bij,bhwj->bhwi", w2c[:, :3, :3], world) + w2c[:, None, None, :3, 3]
            conf = torch.full(pts.shape[:3], self.conf_value, dtype=torch.float32)
            preds.append({"pts3d": pts.float(), "conf": conf, "desc": self.descriptors(world), "desc_conf": conf})
        preds[1]["pts3d_in_other_view"] = preds[1].pop("pts3d")
        device = view1["img"].device
        return tuple({k: v.to(device) for k, v in p.items()} for p in preds)
