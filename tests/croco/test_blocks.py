"""CroCo layers: fused attention against the explicit softmax path, RoPE 2D, positional tables, CroCoNet."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from croco.models.blocks import Attention, Block, CrossAttention, DecoderBlock, PatchEmbed, PositionGetter
from croco.models.croco import CroCoNet
from croco.models.pos_embed import RoPE2D, get_2d_sincos_pos_embed, make_rope


def _rope_reference(tokens, pos, base=100.0):
    """RoPE 2D written from its definition (rotation of feature pairs (i, i + d/2) by pos * base^(-2i/d))."""
    D = tokens.shape[-1]
    half = D // 2
    out = []
    for axis, part in enumerate(tokens.chunk(2, -1)):
        inv = 1.0 / (base ** (torch.arange(0, half, 2).float() / half))
        ang = pos[..., axis].float()[..., None] * inv  # (B, N, half/2)
        c, s = ang.cos()[:, None], ang.sin()[:, None]
        u1, u2 = part.chunk(2, -1)
        out.append(torch.cat((u1 * c - u2 * s, u2 * c + u1 * s), -1))
    return torch.cat(out, -1)


class TestRoPE2D:
    def test_matches_definition(self):
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randn(2, 3, 50, 32, generator=gen)
        pos = torch.randint(0, 40, (2, 50, 2), generator=gen)
        assert torch.allclose(RoPE2D(100.0)(tokens, pos), _rope_reference(tokens, pos), atol=1e-6)

    def test_relative_positions_only(self):
        """q.k after RoPE depends only on the position difference."""
        rope = RoPE2D(100.0)
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(1, 1, 1, 64, dtype=torch.float64, generator=gen)
        k = torch.randn(1, 1, 1, 64, dtype=torch.float64, generator=gen)
        def score(pq, pk):
            return (rope(q, torch.tensor([[pq]])) * rope(k, torch.tensor([[pk]]))).sum()
        # the angle tables are float32 (as the original's): angles of up to ~13 rad carry ~1e-6 rad of rounding,
        # so the invariance holds to ~1e-6 |q| |k| in absolute terms, whatever the size of the score itself
        atol = 1e-6 * float(q.norm() * k.norm())
        assert torch.allclose(score((3, 5), (1, 2)), score((13, 9), (11, 6)), rtol=0, atol=atol)
        assert not torch.allclose(score((3, 5), (1, 2)), score((3, 5), (2, 2)), rtol=0, atol=atol)

    def test_stacked_qk_equals_separate(self):
        rope = RoPE2D()
        qk = torch.randn(2, 2, 4, 30, 16)
        pos = torch.randint(0, 10, (2, 30, 2))
        both = rope(qk, pos)
        assert torch.equal(both[0], rope(qk[0].clone(), pos.clone())) and torch.equal(both[1], rope(qk[1], pos))

    def test_norm_preserved_and_errors(self):
        rope = RoPE2D()
        t = torch.randn(1, 2, 10, 16, dtype=torch.float64)
        pos = torch.randint(0, 20, (1, 10, 2))
        assert torch.allclose(rope(t, pos).norm(dim=-1), t.norm(dim=-1))
        with pytest.raises(ValueError, match="multiple of 4"):
            rope(torch.randn(1, 1, 4, 6), torch.zeros(1, 4, 2, dtype=torch.long))
        with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
            rope(t, pos[..., :1])
        with pytest.raises(ValueError, match="RoPE<freq>"):
            make_rope("RoPEx")
        assert make_rope("cosine") is None and make_rope("RoPE100").base == 100.0


@pytest.mark.parametrize("cls", [Attention, CrossAttention])
@pytest.mark.parametrize("rope", [None, RoPE2D(100.0)])
def test_fused_attention_equals_explicit_softmax(cls, rope, monkeypatch):
    torch.manual_seed(0)
    layer = cls(64, rope=rope, num_heads=4, qkv_bias=True).eval()
    x, y = torch.randn(2, 30, 64), torch.randn(2, 20, 64)
    px, py = torch.randint(0, 8, (2, 30, 2)), torch.randint(0, 8, (2, 20, 2))
    args = (x, px) if cls is Attention else (x, y, y, px, py)
    fused = layer(*args)
    monkeypatch.setattr(cls, "fused_attn", False)
    explicit = layer(*args)
    assert torch.allclose(fused, explicit, atol=1e-5, rtol=1e-5)


def test_blocks_shapes_and_residuals():
    torch.manual_seed(0)
    blk = Block(32, 2, qkv_bias=True, rope=RoPE2D())
    dec = DecoderBlock(32, 2, qkv_bias=True, rope=RoPE2D())
    x, y = torch.randn(1, 12, 32), torch.randn(1, 12, 32)
    pos = PositionGetter()(1, 3, 4, "cpu")
    assert pos.tolist()[0][:5] == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    assert blk(x, pos).shape == x.shape
    out, y_out = dec(x, y, pos, pos)
    assert out.shape == x.shape and y_out is y


def test_sincos_table():
    table = get_2d_sincos_pos_embed(8, (2, 3))
    assert table.shape == (6, 8)
    # token (row 1, col 2): first half encodes the column, second half the row
    assert np.allclose(table[5, 0], math.sin(2.0)) and np.allclose(table[5, 4], math.sin(1.0))
    assert np.allclose(table[5, 2], math.cos(2.0))


def test_patch_embed_checks_size():
    pe = PatchEmbed(32, 16, 3, 8)
    tokens, pos = pe(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 4, 8) and pos.shape == (2, 4, 2)
    with pytest.raises(ValueError, match="does not match"):
        pe(torch.randn(1, 3, 48, 32))


@pytest.mark.parametrize("pos_embed", ["cosine", "RoPE100"])
def test_croconet_pretraining_forward(pos_embed):
    torch.manual_seed(0)
    net = CroCoNet(img_size=64, patch_size=16, enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32,
                   dec_depth=1, dec_num_heads=2, pos_embed=pos_embed)
    img = torch.randn(2, 3, 64, 64)
    out, mask, target = net(img, img)
    assert out.shape == (2, 16, 16 * 16 * 3) and mask.shape == (2, 16) and target.shape == out.shape
    assert int(mask.sum(1)[0]) == int(0.9 * 16)
    assert torch.equal(net.unpatchify(net.patchify(img)), img)
    assert (net.enc_pos_embed is not None) == (pos_embed == "cosine")
