"""CUDA RoPE2D extension (croco.models.curope) against the pure-PyTorch croco.models.pos_embed.RoPE2D.

The CUDA tests need a GPU and the compiled extension (``MAST3R_BUILD_CUROPE=1 pip install -e . --no-build-isolation``
with a CUDA toolkit); they are skipped elsewhere. The last tests always run: the package must import cleanly and
fail with build instructions when the extension is missing.
"""
import importlib
import importlib.util
import subprocess
import sys

import pytest
import torch

from croco.models.curope import cuRoPE2D, is_available

DEVICE = "cuda"
# without a CUDA device the ``cuda`` marker skips these tests (tests/conftest.py); with one, they still need the
# compiled extension
needs_curope = pytest.mark.skipif(
    not (torch.cuda.is_available() and is_available()),
    reason="needs the compiled croco.models.curope._C extension "
    "(MAST3R_BUILD_CUROPE=1 pip install -e . --no-build-isolation)",
)

# (B, H, N, D, max position)
SHAPES = [
    (2, 3, 17, 64, 64),
    (1, 12, 196, 64, 64),  # ViT-B encoder-like: 14x14 grid, head dim 64
    (2, 16, 37, 32, 64),  # decoder-like head dim 32
    (3, 2, 5, 4, 3),  # smallest head dim: one pair per half
    (2, 4, 33, 16, 1000),  # positions far beyond any grid
]


def _reference(freq=100.0, F0=1.0):
    """The pure-PyTorch RoPE2D, forced off the CUDA kernel (it would otherwise dispatch to cuRoPE2D)."""
    from croco.models.pos_embed import RoPE2D

    rope = RoPE2D(freq=freq, F0=F0, use_cuda_kernel=False)
    rope.use_cuda_kernel = False
    return rope


def _tokens(B, H, N, D, layout, dtype=torch.float32, seed=0):
    """(B, H, N, D) tokens on DEVICE with the given memory layout (made on the device: `.to` would compact them)."""
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        base = torch.randn(B, H, N, D, generator=g).to(DEVICE, dtype)
        return base
    if layout == "qkv":  # q, k, v from one projection, as in Attention: unit last stride, heads interleaved
        base = torch.randn(B, N, 3, H, D, generator=g).to(DEVICE, dtype)
        return base.permute(2, 0, 3, 1, 4)[1]
    if layout == "bnhd":  # (B, N, H, D) memory seen as (B, H, N, D)
        base = torch.randn(B, N, H, D, generator=g).to(DEVICE, dtype)
        return base.transpose(1, 2)
    if layout == "strided_last":  # last dim not unit-stride: the wrapper must copy
        base = torch.randn(B, H, N, 2 * D, generator=g).to(DEVICE, dtype)
        return base[..., ::2]
    raise ValueError(layout)


def _positions(B, N, max_pos, seed=0):
    """(B, N, 2) int64 (y, x) positions, non-contiguous, with 0 and max_pos present."""
    g = torch.Generator().manual_seed(seed + 1)
    pos = torch.randint(0, max_pos + 1, (B, 2, N), generator=g)
    pos[0, :, 0] = max_pos
    pos[-1, :, -1] = 0
    return pos.to(DEVICE).transpose(1, 2)


# ------------------------------------------------------------------------------------------------------------------
# CUDA: forward
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@needs_curope
@pytest.mark.parametrize("layout", ["contiguous", "qkv", "bnhd", "strided_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference_fp32(shape, layout):
    B, H, N, D, max_pos = shape
    tokens, positions = _tokens(B, H, N, D, layout), _positions(B, N, max_pos)
    before = tokens.clone()
    out = cuRoPE2D(freq=100.0, F0=1.0)(tokens, positions)
    expected = _reference()(tokens, positions)
    assert out.shape == expected.shape and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(tokens, before), "cuRoPE2D must not modify its input"


@pytest.mark.cuda
@needs_curope
def test_forward_stacked_queries_and_keys():
    """(2, B, H, N, D) = q and k stacked, as croco.models.blocks.Attention calls it; and a 6-d input."""
    B, H, N, D = 2, 4, 50, 64
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(B, N, 3, H, D, generator=g).to(DEVICE).permute(2, 0, 3, 1, 4)
    positions = _positions(B, N, 64)
    rope, ref = cuRoPE2D(), _reference()
    out = rope(qkv[:2], positions)
    assert out.shape == (2, B, H, N, D)
    torch.testing.assert_close(out, ref(qkv[:2], positions), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[0], rope(qkv[0], positions), rtol=0, atol=0)
    torch.testing.assert_close(out[1], rope(qkv[1], positions), rtol=0, atol=0)
    six = torch.randn(2, 3, B, H, N, D, generator=g).to(DEVICE)
    torch.testing.assert_close(rope(six, positions), ref(six, positions), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@needs_curope
@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 1e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
@pytest.mark.parametrize("layout", ["contiguous", "qkv"])
def test_forward_low_precision(dtype, rtol, layout):
    """Angles and rotation in float32, one rounding to fp16 / bf16: within half an ulp of the float32 result.

    (The pure-PyTorch path casts its angles to the tokens' dtype before cos/sin, hence the comparison with the
    float32 reference on the same, upcast, inputs.)
    """
    B, H, N, D, max_pos = 2, 6, 41, 64, 64
    tokens, positions = _tokens(B, H, N, D, layout, dtype), _positions(B, N, max_pos)
    out = cuRoPE2D()(tokens, positions)
    assert out.dtype == dtype and out.shape == tokens.shape
    expected = _reference()(tokens.float(), positions)
    torch.testing.assert_close(out.float(), expected, rtol=rtol, atol=1e-5)


@pytest.mark.cuda
@needs_curope
def test_forward_float64_and_F0():
    B, H, N, D = 2, 3, 23, 32
    positions = _positions(B, N, 64)
    tokens = _tokens(B, H, N, D, "qkv", torch.float64)
    torch.testing.assert_close(cuRoPE2D()(tokens, positions), _reference()(tokens, positions), rtol=1e-12, atol=1e-12)
    tokens = _tokens(B, H, N, D, "contiguous")
    torch.testing.assert_close(cuRoPE2D(F0=2.0)(tokens, positions), _reference(F0=2.0)(tokens, positions),
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cuRoPE2D(freq=10000.0)(tokens, positions), _reference(freq=10000.0)(tokens, positions),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@needs_curope
def test_forward_int32_positions_and_broadcast_batch():
    B, H, N, D = 3, 2, 19, 16
    tokens, positions = _tokens(B, H, N, D, "contiguous"), _positions(B, N, 64)
    rope = cuRoPE2D()
    torch.testing.assert_close(rope(tokens, positions.int()), rope(tokens, positions), rtol=0, atol=0)
    one = positions[:1]
    torch.testing.assert_close(rope(tokens, one), _reference()(tokens, one), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@needs_curope
def test_empty_inputs():
    rope = cuRoPE2D()
    assert rope(torch.zeros(2, 3, 0, 8, device=DEVICE), torch.zeros(2, 0, 2, dtype=torch.long, device=DEVICE)).shape \
        == (2, 3, 0, 8)
    assert rope(torch.zeros(0, 3, 5, 8, device=DEVICE), torch.zeros(0, 5, 2, dtype=torch.long, device=DEVICE)).shape \
        == (0, 3, 5, 8)


# ------------------------------------------------------------------------------------------------------------------
# CUDA: backward
# ------------------------------------------------------------------------------------------------------------------
def _grads(rope, tokens, positions, grad_out):
    leaf = tokens.detach().clone().requires_grad_(True)
    rope(leaf, positions).backward(grad_out)
    return leaf.grad


@pytest.mark.cuda
@needs_curope
@pytest.mark.parametrize("layout", ["contiguous", "qkv"])
@pytest.mark.parametrize("shape", SHAPES[:1] + SHAPES[2:], ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference_fp32(shape, layout):
    B, H, N, D, max_pos = shape
    tokens, positions = _tokens(B, H, N, D, layout), _positions(B, N, max_pos)
    grad_out = _tokens(B, H, N, D, "qkv", seed=7)  # non-contiguous incoming gradient
    got = _grads(cuRoPE2D(), tokens, positions, grad_out)
    expected = _grads(_reference(), tokens, positions, grad_out)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@needs_curope
def test_backward_through_strided_views_and_stack():
    """Gradients flow back through the non-contiguous q/k slices of a qkv tensor."""
    B, H, N, D = 2, 4, 30, 32
    g = torch.Generator().manual_seed(5)
    qkv_src = torch.randn(B, N, 3, H, D, generator=g).to(DEVICE)
    positions = _positions(B, N, 64)
    grad_out = torch.randn(2, B, H, N, D, generator=g).to(DEVICE)
    grads = []
    for rope in (cuRoPE2D(), _reference()):
        leaf = qkv_src.clone().requires_grad_(True)
        rope(leaf.permute(2, 0, 3, 1, 4)[:2], positions).backward(grad_out)
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(grads[0][:, :, 2]) == 0  # v untouched


@pytest.mark.cuda
@needs_curope
@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 1e-3), (torch.bfloat16, 1.6e-2)], ids=["fp16", "bf16"])
def test_backward_low_precision(dtype, rtol):
    B, H, N, D = 2, 4, 29, 64
    tokens, positions = _tokens(B, H, N, D, "qkv", dtype), _positions(B, N, 64)
    grad_out = _tokens(B, H, N, D, "contiguous", dtype, seed=9)
    got = _grads(cuRoPE2D(), tokens, positions, grad_out)
    assert got.dtype == dtype
    expected = _grads(_reference(), tokens.float(), positions, grad_out.float())
    torch.testing.assert_close(got.float(), expected, rtol=rtol, atol=1e-5)


@pytest.mark.cuda
@needs_curope
def test_gradcheck_float64():
    B, H, N, D = 1, 2, 6, 8
    tokens = _tokens(B, H, N, D, "qkv", torch.float64).detach().requires_grad_(True)
    positions = _positions(B, N, 64)
    rope = cuRoPE2D()
    assert torch.autograd.gradcheck(lambda t: rope(t, positions), (tokens,), eps=1e-6, atol=1e-8)


@pytest.mark.cuda
@needs_curope
def test_extension_checks_inputs():
    ext = importlib.import_module("croco.models.curope._C")
    pos = torch.zeros(1, 3, 2, dtype=torch.long, device=DEVICE)
    tok = torch.randn(1, 2, 3, 8, device=DEVICE)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        ext.rope_2d(tok.cpu(), pos.cpu(), 100.0, 1.0)
    with pytest.raises(RuntimeError, match="divisible by 4"):
        ext.rope_2d(torch.randn(1, 2, 3, 6, device=DEVICE), pos, 100.0, 1.0)
    with pytest.raises(RuntimeError, match="int64"):
        ext.rope_2d(tok, pos.int(), 100.0, 1.0)
    with pytest.raises(RuntimeError, match="positions must have shape"):
        ext.rope_2d(tok, torch.zeros(1, 4, 2, dtype=torch.long, device=DEVICE), 100.0, 1.0)
    with pytest.raises(RuntimeError, match="same device"):
        ext.rope_2d(tok, pos.cpu(), 100.0, 1.0)
    with pytest.raises(RuntimeError, match="float32, float16, bfloat16"):
        ext.rope_2d(tok.int(), pos, 100.0, 1.0)
    with pytest.raises(RuntimeError, match="stride 1"):
        ext.rope_2d(torch.randn(1, 2, 3, 16, device=DEVICE)[..., ::2], pos, 100.0, 1.0)
    with pytest.raises(ValueError, match="divisible by 4"):
        cuRoPE2D()(torch.randn(1, 2, 3, 6, device=DEVICE), pos)
    # the inverse frequencies computed in C++ when none are given are the wrapper's
    torch.testing.assert_close(ext.rope_2d(tok, pos, 100.0, 1.0), cuRoPE2D()(tok, pos), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------------------
# always run: the package works without the extension
# ------------------------------------------------------------------------------------------------------------------
def test_import_is_silent_without_extension():
    """Importing croco.models.curope prints and warns nothing, whether or not the extension is built."""
    code = "import croco.models.curope as m; assert m.is_available() in (True, False)"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    if importlib.util.find_spec("croco.models.curope._C") is None:
        assert is_available() is False


def test_missing_extension_raises_with_build_instructions(monkeypatch):
    from croco.models.curope import curope2d

    monkeypatch.setitem(sys.modules, "croco.models.curope._C", None)  # as if it were not built
    monkeypatch.setattr(curope2d, "_ext", None)
    assert is_available() is False
    with pytest.raises(ImportError, match="MAST3R_BUILD_CUROPE=1 pip install -e ."):
        cuRoPE2D()(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 2, dtype=torch.long))


class _FakeItem:
    """The two methods of a pytest item that the ``cuda`` marker hook uses."""

    def __init__(self, *marks):
        self.marks = [m.mark for m in marks]

    def get_closest_marker(self, name):
        return next((m for m in self.marks if m.name == name), None)

    def add_marker(self, mark):
        self.marks.append(mark.mark)


@pytest.mark.parametrize("cuda", [False, True], ids=["no-cuda", "cuda"])
def test_cuda_marker_hook(monkeypatch, cuda):
    """tests/conftest.py skips exactly the ``@pytest.mark.cuda`` tests, and only when torch sees no CUDA device."""
    from tests import conftest

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    marked, plain, slow = _FakeItem(pytest.mark.cuda), _FakeItem(), _FakeItem(pytest.mark.slow)
    conftest.pytest_collection_modifyitems(None, [marked, plain, slow])
    skip = marked.get_closest_marker("skip")
    if cuda:
        assert skip is None
    else:
        assert skip is not None and skip.kwargs["reason"] == conftest.CUDA_SKIP_REASON
    assert plain.get_closest_marker("skip") is None and slow.get_closest_marker("skip") is None
    assert [m.name for m in plain.marks] == [] and [m.name for m in slow.marks] == ["slow"]
