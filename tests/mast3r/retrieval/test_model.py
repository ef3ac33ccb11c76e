"""mast3r.retrieval.model: features of the original's RetrievalModel (fixture), local selection, whitening."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dust3r.utils.image import load_images
from mast3r.retrieval.model import (RetrievalModel, Whitener, extract_local_features, how_select_local,
                                    pcawhitenlearn_shrinkage, weighted_spoc)

from .conftest import CHECKPOINT, IMAGES, INDEX

FEAT_RTOL = 5e-6  # relative to the array's max |value|: float32 rounding across machines (see tests/parity.py)


def _rel(ours, ref):
    ours = ours.detach().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    return float(np.abs(ours.astype(np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def model(backbone):
    args = INDEX["checkpoint_args"]
    m = RetrievalModel(backbone, freeze_backbone=args["freeze_backbone"], prewhiten=args["prewhiten"],
                       hdims=[int(h) for h in args["hdims"].split("_")], residual=args["residual"],
                       postwhiten=args["postwhiten"], featweights=args["featweights"], nfeat=args["nfeat"],
                       pretrained_retrieval=str(CHECKPOINT))
    return m.eval()


class TestRetrievalModel:
    def test_state_dict_keys_shapes_dtypes(self, model):
        state = model.state_dict()
        assert {k: list(v.shape) for k, v in state.items()} == INDEX["head_keys"]  # no backbone keys: frozen
        assert state["prewhiten.p"].dtype == state["postwhiten.m"].dtype == torch.float64
        assert state["projector.0.weight"].dtype == torch.float32
        assert not any(p.requires_grad for p in model.backbone.parameters())

    @pytest.mark.parametrize("i", range(len(IMAGES)))
    def test_forward_local_matches_original(self, model, reference, i):
        view = load_images([IMAGES[i]], size=INDEX["load_images_size"], verbose=False)[0]
        assert view["true_shape"][0].tolist() == reference[f"image{i}.true_shape"].tolist()
        with torch.no_grad():
            feat, attn, token_idx = model.forward_local(view)
        assert feat.shape == (1, INDEX["checkpoint_args"]["nfeat"], 80) and feat.dtype == torch.float32
        assert token_idx[0].tolist() == reference[f"image{i}.token_idx"].tolist()
        assert _rel(feat[0], reference[f"image{i}.feat"]) < FEAT_RTOL
        assert _rel(attn[0], reference[f"image{i}.attn"]) < FEAT_RTOL

    def test_extract_local_features_matches_original(self, model, reference):
        feat, ids = extract_local_features(model, IMAGES, 512, tocpu=True, device="cpu")
        assert ids.tolist() == reference["local_features.ids"].tolist()
        assert _rel(feat, reference["local_features.feat"]) < FEAT_RTOL

    def test_global_descriptor_is_unit_norm(self, model):
        view = load_images([IMAGES[0]], size=512, verbose=False)[0]
        with torch.no_grad():
            desc = model(view)
        assert desc.shape == (1, 80)
        assert torch.allclose(desc.norm(dim=1), torch.ones(1), atol=1e-6)

    def test_bad_arguments(self, backbone):
        with pytest.raises(ValueError, match="featweights"):
            RetrievalModel(backbone, featweights="softmax")
        with pytest.raises(ValueError, match="residual"):
            RetrievalModel(backbone, hdims=[32], residual=True)  # backbone width is 64


class TestHowSelectLocal:
    def test_topk_by_attention(self):
        feat = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
        attn = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7], [5.0, 4.0, 3.0, 2.0, 1.0]])
        top_feat, top_attn, idx = how_select_local(feat, attn, 2)
        assert idx.tolist() == [[1, 4], [0, 1]]
        assert top_attn.tolist() == [[pytest.approx(0.9), pytest.approx(0.7)], [5.0, 4.0]]
        assert torch.equal(top_feat[0], feat[0, [1, 4]]) and torch.equal(top_feat[1], feat[1, [0, 1]])

    def test_fraction_and_cap(self):
        feat, attn = torch.randn(1, 10, 4), torch.rand(1, 10)
        assert how_select_local(feat, attn, -0.5)[0].shape == (1, 5, 4)
        assert how_select_local(feat, attn, 300)[0].shape == (1, 10, 4)
        with pytest.raises(ValueError, match="fraction"):
            how_select_local(feat, attn, -2)


class TestWhitening:
    def test_whitener_float64_keeps_dtype(self):
        w = Whitener(3)
        w.m.data = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
        w.p.data = torch.diag(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64))
        x = torch.ones(2, 4, 3)
        out = w(x)
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert torch.equal(out[0, 0], torch.tensor([0.0, -3.0, -8.0]))

    def test_pca_whitening_whitens(self):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(2000, 4)) @ np.array([[3, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 2.0]]) + 5
        m, P = pcawhitenlearn_shrinkage(X)
        Y = (X - m) @ P
        assert np.allclose(np.cov(Y.T, bias=True), np.eye(4), atol=1e-8)
        assert np.allclose(m, X.mean(axis=0, keepdims=True))
        # the first component is the direction of largest variance of X
        top = np.linalg.eigh(np.cov(X.T))[1][:, -1]
        assert abs(P[:, 0] / np.linalg.norm(P[:, 0]) @ top) > 1 - 1e-9

    def test_weighted_spoc(self):
        feat = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        assert torch.allclose(weighted_spoc(feat, torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


def test_reinitialize_whitening_whitens_the_training_tokens(backbone):
    from mast3r.retrieval.model import Dust3rInputFromImageList

    class Images:
        def imlist_dataset_n_images(self, n, seed):
            return Dust3rInputFromImageList(IMAGES[:2], imsize=512)

    torch.manual_seed(0)
    m = RetrievalModel(backbone, prewhiten=0, hdims=[48, 32], postwhiten=0, nfeat=10).eval()
    m.reinitialize_whitening(0, Images(), device="cpu")
    views = [load_images([p], size=512, verbose=False)[0] for p in IMAGES[:2]]
    with torch.no_grad():
        tokens = torch.cat([m._encode(v["img"], v["true_shape"])[0] for v in views]).double()
        pre = m.prewhiten(tokens)
        post = m.postwhiten(m._project(tokens.float()).double())
    def cov(x):
        centred = x - x.mean(0)
        return centred.T @ centred / len(x)

    assert not torch.allclose(cov(tokens), torch.eye(64, dtype=torch.float64), atol=0.5)
    # learnt from float32 features: the near-degenerate directions of the LayerNorm'd tokens keep ~1e-2 of error
    for white in (pre, post):
        assert torch.allclose(cov(white), torch.eye(white.shape[1], dtype=white.dtype), atol=2e-2)
    # not due at epoch 1 (period 0 means: once, at epoch 0)
    before = m.prewhiten.p.clone()
    m.reinitialize_whitening(1, Images(), device="cpu")
    assert torch.equal(before, m.prewhiten.p)
