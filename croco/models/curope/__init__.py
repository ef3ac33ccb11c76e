"""Optional CUDA RoPE2D (``cuRoPE2D``). Importing this package never needs the compiled extension: use
``is_available()`` to know whether ``croco.models.curope._C`` was built, else use ``croco.models.pos_embed.RoPE2D``."""

from .curope2d import cuRoPE2D, is_available

__all__ = ["cuRoPE2D", "is_available"]
