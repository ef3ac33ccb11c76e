"""DUSt3R losses against the original's values (``tests/data/training``: criterion strings evaluated by the
original dust3r / mast3r on two symmetrised batches, with their stored predictions), plus the criterion
arithmetic and the ``ast`` parser's allow-list."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import dust3r.losses as losses
from dust3r.inference import make_batch_symmetric

REL = 1e-5  # fixtures README: losses and details rel 1e-5


def load_losses_batch(data_dir, name: str):
    """(view1, view2) symmetrised, (pred1, pred2), the npz, and the criteria records of batch ``name``."""
    arrays = np.load(data_dir / "training" / f"losses_batch_{name}.npz")
    views, preds = ({}, {}), ({}, {})
    for key in arrays.files:
        parts = key.split(".")
        if parts[0] == "batch":
            views[int(parts[1][-1]) - 1][parts[2]] = torch.from_numpy(arrays[key])
        elif parts[0] in ("pred1", "pred2"):
            preds[int(parts[0][-1]) - 1][parts[1]] = torch.from_numpy(arrays[key])
    record = json.loads((data_dir / "training" / "losses_index.json").read_text())["losses"]["batches"][name]
    view1, view2 = make_batch_symmetric(views)
    return (view1, view2), preds, arrays, record


def run_criterion(criterion, views, preds, grad: bool = False):
    """``criterion`` on deep copies of the views and leaf copies of the predictions (as the fixtures were made)."""
    pred1, pred2 = ({k: v.clone().requires_grad_(grad) for k, v in p.items()} for p in preds)
    loss, details = criterion(copy.deepcopy(views[0]), copy.deepcopy(views[1]), pred1, pred2)
    return loss, details, pred1, pred2


def assert_matches(loss, details, expected):
    assert float(loss.detach()) == pytest.approx(expected["loss"], rel=REL)
    assert set(details) == set(expected["details"])
    for key, value in expected["details"].items():
        assert float(torch.as_tensor(details[key]).detach()) == pytest.approx(value, rel=REL), key
    for key, kind in expected["details_value_types"].items():
        assert isinstance(details[key], torch.Tensor if kind == "Tensor" else float), key


def fixture_criterion(parse, data_dir, batch: str, tag: str, namespace: str):
    """The criterion ``parse`` builds from the fixture string ``tag`` of ``batch`` (repr checked), with its
    inputs: ``(criterion, expected record, views, preds, arrays, batch record)``."""
    views, preds, arrays, record = load_losses_batch(data_dir, batch)
    expected = record["criteria"][tag]
    assert expected["namespace"] == namespace
    criterion = parse(expected["criterion"])
    assert repr(criterion) == expected["repr"]
    return criterion, expected, views, preds, arrays, record


@pytest.mark.parametrize("batch", ["A", "B"])
def test_dust3r_criterion_matches_the_original(data_dir, batch):
    criterion, expected, views, preds, _, _ = fixture_criterion(losses.parse_criterion, data_dir, batch,
                                                                "dust3r_default_pure_dust3r", "dust3r")
    loss, details, _, _ = run_criterion(criterion, views, preds)
    assert_matches(loss, details, expected)


def _regr_inputs(data_dir):
    views, preds, _, _ = load_losses_batch(data_dir, "A")
    return views, preds


def test_regr3d_plain_is_the_mean_of_both_views(data_dir):
    views, preds = _regr_inputs(data_dir)
    loss, details, _, _ = run_criterion(losses.Regr3D(losses.L21, norm_mode="avg_dis"), views, preds)
    assert float(loss) == pytest.approx(details["Regr3D_pts3d_1"] + details["Regr3D_pts3d_2"], rel=1e-6)
    # the identity prediction (the GT itself, in camera 1) has zero loss
    gt = [torch.linalg.solve(views[0]["camera_pose"][:, None, None], torch.cat(
        (v["pts3d"], torch.ones_like(v["pts3d"][..., :1])), -1)[..., None])[..., :3, 0] for v in views]
    perfect = ({"pts3d": gt[0]}, {"pts3d_in_other_view": gt[1]})
    for cls in (losses.Regr3D, losses.Regr3D_ShiftInv, losses.Regr3D_ScaleInv, losses.Regr3D_ScaleShiftInv):
        loss, _, _, _ = run_criterion(cls(losses.L21), views, perfect)
        assert float(loss) < 1e-5, cls.__name__
    # scale and depth-shift invariance of the invariant variants
    shift = torch.tensor([0, 0, 2.0])
    moved = ({"pts3d": gt[0] * 3 + shift}, {"pts3d_in_other_view": gt[1] * 3 + shift})
    assert float(run_criterion(losses.Regr3D_ScaleShiftInv(losses.L21), views, moved)[0]) < 1e-4
    assert float(run_criterion(losses.Regr3D(losses.L21, norm_mode=None), views, moved)[0]) > 1


def test_arithmetic_weights_chain_and_leaves_operands_alone(data_dir):
    views, preds = _regr_inputs(data_dir)
    a = losses.Regr3D(losses.L21)
    b = losses.Regr3D_ScaleShiftInv(losses.L21, gt_scale=True)
    la = float(run_criterion(a, views, preds)[0])
    lb = float(run_criterion(b, views, preds)[0])
    combo = a + 0.5 * b
    assert repr(combo) == "Regr3D(L21Loss()) + 0.5*Regr3D_ScaleShiftInv(L21Loss())"
    loss, details, _, _ = run_criterion(combo, views, preds)
    assert float(loss) == pytest.approx(la + 0.5 * lb, rel=1e-6)
    # details are not weighted
    assert details["Regr3D_ScaleShiftInv_pts3d_1"] + details["Regr3D_ScaleShiftInv_pts3d_2"] == pytest.approx(lb)
    assert repr(a) == "Regr3D(L21Loss())" and repr(b) == "Regr3D_ScaleShiftInv(L21Loss())"
    neg = -1. * a
    assert repr(neg) == "-1*Regr3D(L21Loss())"
    assert float(run_criterion(neg, views, preds)[0]) == pytest.approx(-la, rel=1e-6)
    assert repr(2 * (0.25 * a)) == "0.5*Regr3D(L21Loss())"
    with pytest.raises(ValueError, match="scale each term"):
        0.5 * (a + b)
    assert repr(a + b + a) == "Regr3D(L21Loss()) + Regr3D_ScaleShiftInv(L21Loss()) + Regr3D(L21Loss())"


def test_conf_loss_uses_per_pixel_losses():
    conf = losses.ConfLoss(losses.Regr3D(losses.L21), alpha=0.2)
    assert conf.pixel_loss.criterion.reduction == "none"
    with pytest.raises(ValueError, match="alpha"):
        losses.ConfLoss(losses.Regr3D(losses.L21), alpha=0)


def test_sum_returns_pixel_losses_or_total():
    pix = (torch.ones(3), None), (torch.ones(2), None)
    out = losses.Sum(*pix)
    assert len(out) == 2 and all(o[0] is p[0] for o, p in zip(out, pix))
    assert float(losses.Sum((torch.tensor(1.5), None), (torch.tensor(2.0), None))) == 3.5


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch {marker}')",
    "Regr3D(__import__('os').system('touch {marker}'))",
    "ConfLoss(Regr3D(L21), alpha=open('{marker}', 'w'))",
    "MatchingLoss(InfoNCE())",  # MASt3R classes are not in DUSt3R's namespace
    "Regr3D(L21).__class__",
    "[x for x in ()]",
    "lambda: 0",
    "Regr3D(*[L21])",
    "Regr3D(L21, **{{}})",
    "L21(1)",  # objects are not callable through a string, only the listed classes
    "Regr3D(L21) + 1",
])
def test_parse_criterion_refuses_anything_outside_the_allow_list(tmp_path, text):
    marker = tmp_path / "executed"
    with pytest.raises(ValueError):
        losses.parse_criterion(text.format(marker=marker))
    assert not marker.exists()


def test_parse_criterion_builds_the_string():
    crit = losses.parse_criterion("ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2) + -1.*Regr3D(L21Loss())")
    assert repr(crit) == "ConfLoss(Regr3D(L21Loss())) + -1*Regr3D(L21Loss())"
    assert crit.alpha == 0.2 and crit.pixel_loss.norm_mode == "avg_dis"
    with pytest.raises(ValueError, match="syntax"):
        losses.parse_criterion("Regr3D(")


def test_conf_loss_without_valid_pixels_warns_and_counts_zero(data_dir, caplog):
    views, preds = _regr_inputs(data_dir)
    views[1]["valid_mask"] = torch.zeros_like(views[1]["valid_mask"])
    with caplog.at_level("WARNING", logger="dust3r.losses"):
        loss, details, _, _ = run_criterion(losses.ConfLoss(losses.Regr3D(losses.L21), alpha=0.2), views, preds)
    assert details["conf_loss2"] == 0.0 and float(loss) == pytest.approx(details["conf_loss_1"])
    assert "no valid pixel in view 2" in caplog.text


def test_subtraction_is_adding_the_negative(data_dir):
    views, preds = _regr_inputs(data_dir)
    diff = losses.parse_criterion("Regr3D(L21) - 0.5*Regr3D_ShiftInv(L21)")
    ref = losses.parse_criterion("Regr3D(L21) + -0.5*Regr3D_ShiftInv(L21)")
    assert repr(diff) == repr(ref) == "Regr3D(L21Loss()) + -0.5*Regr3D_ShiftInv(L21Loss())"
    assert float(run_criterion(diff, views, preds)[0]) == float(run_criterion(ref, views, preds)[0])
