"""dust3r.reconstruction: the non-UI stages the demos and the CLIs share."""
import logging
import warnings

import numpy as np
import PIL.Image
import pytest

from dust3r.inputs import InputError
from dust3r.reconstruction import DENSE_DEFAULTS, UserInputError, prepare_views, reconstruct_dense, unique_names


def _png(path, w=64, h=48, seed=0):
    PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_user_input_error_is_an_input_error():
    assert issubclass(UserInputError, InputError) and issubclass(UserInputError, ValueError)


class TestUniqueNames:
    def test_repeated_base_names(self):
        paths = ["a/x.png", "b/x.png", "c/y.jpg", "d/x.png"]
        assert unique_names(paths, 4) == ["x.png", "x_1.png", "y.jpg", "x_2.png"]

    def test_twin_of_a_single_image(self):
        assert unique_names(["only.png"], 2) == ["only.png", "only_1.png"]

    def test_a_name_that_looks_like_a_generated_one(self):
        names = unique_names(["x_1.png", "x.png", "x.png"], 3)
        assert names[:2] == ["x_1.png", "x.png"] and len(set(names)) == 3


class TestPrepareViews:
    def test_single_image_is_paired_with_a_copy(self, tmp_path):
        views, names = prepare_views([_png(tmp_path / "one.png")], 64)
        assert len(views) == 2 and names == ["one.png", "one_1.png"]
        assert (views[1]["idx"], views[1]["instance"]) == (1, "1")
        assert views[0]["img"].shape == (1, 3, 48, 64)
        assert views[1]["img"] is not views[0]["img"] and (views[1]["img"] == views[0]["img"]).all()

    def test_size_rounded_to_the_patch_size_with_a_note(self, tmp_path, caplog):
        paths = [_png(tmp_path / f"{k}.png", 96, 72, seed=k) for k in range(2)]
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
            warnings.simplefilter("always")
            views, _ = prepare_views(paths, 70, patch_size=16)
        assert tuple(views[0]["true_shape"][0]) == (48, 64)
        assert not [w for w in caught if issubclass(w.category, UserWarning)]
        assert any("70" in r.getMessage() and "64" in r.getMessage() for r in caplog.records)

    def test_unreadable_image(self, tmp_path):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG truncated")
        with pytest.raises(UserInputError, match="cannot read the images.*bad.png"):
            prepare_views([_png(tmp_path / "ok.png"), str(bad)], 64)


def test_two_images_give_a_pair_viewer_with_the_true_relative_pose(tmp_path):
    from dust3r.cloud_opt.pair_viewer import PairViewer
    from dust3r.utils.synthetic import OracleModel, make_scene, pose_errors

    gt = make_scene(n_views=2, height=48, width=64, seed=11)
    paths = gt.save_images(tmp_path)
    scene, names = reconstruct_dense(OracleModel(gt), paths, "cpu", 64)
    assert isinstance(scene, PairViewer) and names == ["img_000.png", "img_001.png"]
    err = pose_errors(scene.get_im_poses().detach().numpy(), gt.cam2world)
    assert err["rot_deg"] < 0.5


def test_one_set_of_dense_defaults():
    """The pipeline's defaults are the table's, which holds the original demo's values."""
    import inspect

    params = inspect.signature(reconstruct_dense).parameters
    assert {k: params[k].default for k in DENSE_DEFAULTS} == DENSE_DEFAULTS
    assert DENSE_DEFAULTS == {"schedule": "linear", "niter": 300, "lr": 0.01}
