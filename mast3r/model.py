"""MASt3R model: DUSt3R with a head that also predicts dense local descriptors (and their confidence)."""
from __future__ import annotations

from dust3r.model import AsymmetricCroCo3DStereo, inf, load_model  # noqa: F401  (load_model re-exported)
from dust3r.model_loading import register_model
from dust3r.utils.misc import transpose_to_landscape  # noqa: F401

from .catmlp_dpt_head import mast3r_head_factory


@register_model
class AsymmetricMASt3R(AsymmetricCroCo3DStereo):
    """DUSt3R + local features.

    Args:
        desc_mode: descriptor activation (``'norm'``: unit length).
        two_confs: predict a separate confidence for the descriptors (``desc_conf``); otherwise ``desc_conf``
            is a copy of ``conf``.
        desc_conf_mode: activation of ``desc_conf`` (default: ``conf_mode``).
        **kwargs: AsymmetricCroCo3DStereo arguments (``head_type='catmlp+dpt'``, ``output_mode='pts3d+desc24'``...).

    Outputs add ``desc`` (B, H, W, D) and ``desc_conf`` (B, H, W) to both result dicts.
    """

    def __init__(self, desc_mode=("norm"), two_confs: bool = False, desc_conf_mode=None, **kwargs):
        self.desc_mode = desc_mode
        self.two_confs = two_confs
        self.desc_conf_mode = desc_conf_mode
        super().__init__(**kwargs)

    @classmethod
    def describes_config(cls, config: dict) -> bool:
        """Whether a ``config.json`` (which names no class) holds this architecture: pointmaps + descriptors."""
        return (str(config.get("output_mode", "")).startswith("pts3d+desc")
                or any(key in config for key in ("desc_mode", "two_confs", "desc_conf_mode")))

    def set_downstream_head(self, output_mode, head_type, landscape_only, depth_mode, conf_mode, patch_size=16,
                            img_size=224, **kw):
        self._check_img_size(img_size, patch_size)
        self.output_mode = output_mode
        self.head_type = head_type
        self.depth_mode = depth_mode
        self.conf_mode = conf_mode
        if self.desc_conf_mode is None:
            self.desc_conf_mode = conf_mode
        self.downstream_head1 = mast3r_head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))
        self.downstream_head2 = mast3r_head_factory(head_type, output_mode, self, has_conf=bool(conf_mode))
        self._set_head_wrappers(landscape_only)
