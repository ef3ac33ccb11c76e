"""Interim two-view demo: matching pipeline, defaults that keep the server private."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from mast3r.demo import free_port, get_args_parser, match_two_images, model_source, server_address
from mast3r.viz import draw_matches


def test_defaults_bind_localhost():
    args = get_args_parser().parse_args([])
    assert server_address(args.server_name, args.local_network) == "127.0.0.1"
    assert server_address(None, True) == "0.0.0.0"
    assert server_address("10.1.2.3", False) == "10.1.2.3"
    assert model_source(None, args.model_name) == "naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
    assert model_source("ckpt.pth", args.model_name) == "ckpt.pth"


def test_free_port_skips_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        busy = s.getsockname()[1]
        s.listen()
        assert free_port(busy, "127.0.0.1") > busy


def test_match_two_images_and_drawing(tiny_model, data_dir):
    model = tiny_model("mast3r_tiny_b")
    res = match_two_images(model, [data_dir / "images" / "d_small.png", data_dir / "images" / "e_alpha.png"],
                           "cpu", image_size=224)
    assert res.img0.shape == (224, 224, 3) and len(res.xy0) == len(res.xy1)
    assert (res.xy0 >= 3).all() and (res.xy0 < 224 - 3).all()
    drawing = res.drawing(n_viz=5)
    assert drawing.shape == (224, 448, 3) and drawing.dtype == np.uint8
    with pytest.raises(ValueError, match="exactly 2 images"):
        match_two_images(model, [data_dir / "images" / "d_small.png"], "cpu")


def test_draw_matches_validates():
    img = np.zeros((10, 12, 3))
    out = draw_matches(img, np.zeros((14, 8, 3)), np.array([[1, 2]]), np.array([[3, 4]]))
    assert out.shape == (14, 20, 3) and out.max() > 0
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        draw_matches(img, img, np.zeros((3, 2)), np.zeros((2, 2)))
