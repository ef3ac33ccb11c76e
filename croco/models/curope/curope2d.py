"""2D rotary position embedding (RoPE2D) through the optional CUDA extension ``croco.models.curope._C``.

``cuRoPE2D`` is a drop-in replacement of the pure-PyTorch ``croco.models.pos_embed.RoPE2D`` with the same numerics
(float32 angles, same inverse frequencies, same rotation formula). The extension is built by ``setup.py`` only where a
CUDA toolkit and a CUDA-enabled torch exist; importing this module never needs it. ``is_available()`` tells whether it
was built, and constructing ``cuRoPE2D`` without it raises an ``ImportError`` that says how to build it.

Convention (as in CroCo with ``pos_embed='RoPE100'``): tokens ``(B, H, N, D)`` with ``D % 4 == 0``, positions
``(B, N, 2)`` int64 as ``(y, x)``. The first ``D/2`` features are rotated with the y coordinate, the last ``D/2`` with
the x coordinate; inside each half of size ``d = D/2`` the pairs ``(i, i + d/2)`` are rotated by the angle
``F0 * pos * inv_freq[i]`` with ``inv_freq = 1 / base ** (arange(0, d, 2) / d)``. The result is a new tensor: the
input is never modified (unlike the original in-place CUDA kernel).
"""

import importlib

import torch

__all__ = ["cuRoPE2D", "is_available"]

_EXTENSION_NAME = "croco.models.curope._C"
_BUILD_HINT = (
    "The CUDA RoPE2D extension `croco.models.curope._C` is not built. Build it on a machine with a CUDA toolkit "
    "(nvcc) and a CUDA-enabled PyTorch, from the repository root: "
    "`MAST3R_BUILD_CUROPE=1 pip install -e . --no-build-isolation` "
    "(--no-build-isolation lets setup.py see the installed torch). "
    "Otherwise use the pure-PyTorch `croco.models.pos_embed.RoPE2D`, which has the same numerics."
)

_ext = None  # the loaded extension module, once an import succeeded


def _load_extension():
    """Import the compiled extension, or raise ImportError with instructions to build it."""
    global _ext
    if _ext is None:
        try:
            _ext = importlib.import_module(_EXTENSION_NAME)
        except ImportError as exc:
            raise ImportError(f"{_BUILD_HINT} (import error: {exc})") from exc
    return _ext


def is_available() -> bool:
    """True when the compiled extension can be imported (this does not check that a GPU is present)."""
    try:
        _load_extension()
    except ImportError:
        return False
    return True


class _RoPE2DFunction(torch.autograd.Function):
    """Out-of-place RoPE2D; its backward is the rotation by the opposite angles."""

    @staticmethod
    def forward(ctx, tokens, positions, base, F0, inv_freq):
        ext = _load_extension()
        out = ext.rope_2d(tokens, positions, base, F0, inv_freq)
        ctx.save_for_backward(positions, inv_freq)
        ctx.base = base
        ctx.F0 = F0
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        positions, inv_freq = ctx.saved_tensors
        grad_tokens = None
        if ctx.needs_input_grad[0]:
            if grad_out.stride(-1) != 1:
                grad_out = grad_out.contiguous()
            grad_tokens = _load_extension().rope_2d_backward(grad_out, positions, ctx.base, ctx.F0, inv_freq)
        return grad_tokens, None, None, None, None


class cuRoPE2D(torch.nn.Module):
    """CUDA RoPE2D: ``forward(tokens (B, H, N, D), positions (B, N, 2) int64) -> (B, H, N, D)``.

    Leading dims are accepted too (``(L, B, H, N, D)``, e.g. queries and keys stacked: one launch for both).
    float32, float16 and bfloat16 tokens: angles and rotation in float32, result rounded once to the tokens' dtype;
    float64 tokens: float32 angles (like the reference), sin/cos and rotation in float64. Any strides are accepted
    without a copy, except a non unit-stride last dim. The output is a new contiguous tensor (the input is never
    modified). No parameters nor buffers: state dicts are unaffected.
    """

    def __init__(self, freq=100.0, F0=1.0):
        super().__init__()
        _load_extension()  # fail early, with the build instructions, when the extension is missing
        self.base = float(freq)
        self.F0 = float(F0)
        self._inv_freq_cache = {}

    def extra_repr(self):
        return f"freq={self.base}, F0={self.F0}"

    def _inv_freq(self, D, device):
        key = (D, device)
        inv_freq = self._inv_freq_cache.get(key)
        if inv_freq is None:
            # the same torch ops as the pure-PyTorch RoPE1D, on the tokens' device: bitwise the same float32 values
            # (built outside inference mode so that a cache filled under torch.inference_mode() can still be saved
            # for backward later)
            d = D // 2
            with torch.inference_mode(False), torch.no_grad():
                inv_freq = 1.0 / (self.base ** (torch.arange(0, d, 2, device=device).float() / d))
            self._inv_freq_cache[key] = inv_freq
        return inv_freq

    def forward(self, tokens, positions):
        """tokens (..., B, H, N, D), leading dims optional (e.g. stacked q and k); positions (B, N, 2) integer."""
        if tokens.dim() < 4:
            raise ValueError(f"cuRoPE2D: tokens must have shape (..., B, H, N, D), got {tuple(tokens.shape)}")
        if tokens.size(-1) % 4 != 0:
            raise ValueError(f"cuRoPE2D: the feature dim D must be divisible by 4, got D = {tokens.size(-1)}")
        shape = tokens.shape
        if tokens.dim() > 5:  # the kernel takes (L, B, H, N, D): fold the leading dims into L
            tokens = tokens.reshape(-1, *shape[-4:])
        if tokens.stride(-1) != 1:
            tokens = tokens.contiguous()
        if positions.dtype != torch.int64 and not positions.is_floating_point():
            positions = positions.long()
        inv_freq = self._inv_freq(tokens.size(-1), tokens.device)
        out = _RoPE2DFunction.apply(tokens, positions, self.base, self.F0, inv_freq)
        return out.view(shape)
