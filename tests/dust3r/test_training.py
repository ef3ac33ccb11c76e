"""dust3r.training: the original's command line, model / dataset-string builders (nothing evaluated), the epoch
loop's schedule, gradient accumulation and resume position, checkpoints, ``--pretrained`` loading; and
dust3r.utils.parallel."""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import threading
from pathlib import Path

import pytest
import torch

import dust3r.training as training
import dust3r.training.checkpointing as checkpointing
from croco.utils.misc import NativeScalerWithGradNormCount, cosine_warmup_lr, load_checkpoint_safe
from dust3r.model import AsymmetricCroCo3DStereo
from dust3r.utils.parallel import parallel_processes, parallel_threads

LOOP_FACTS = json.loads((Path(__file__).resolve().parents[1] / "data" / "training" / "loop" /
                         "train_loop.json").read_text())["train_loop"]

TINY_DUST3R = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(32, 32), "
               "head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
               "enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=1, dec_num_heads=2)")


# ------------------------------------------------------------------------------------------------- command line
class TestArgs:
    def test_original_defaults(self):
        args = training.get_args_parser().parse_args(["--train_dataset", "x"])
        assert args.model == "AsymmetricCroCo3DStereo(patch_embed_cls='ManyAR_PatchEmbed')"
        assert args.train_criterion == "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
        assert (args.seed, args.batch_size, args.accum_iter, args.epochs) == (0, 64, 1, 800)
        assert (args.weight_decay, args.lr, args.blr, args.min_lr, args.warmup_epochs) == (0.05, None, 1.5e-4, 0, 40)
        assert (args.num_workers, args.world_size, args.local_rank, args.dist_url) == (8, 1, -1, "env://")
        assert (args.eval_freq, args.save_freq, args.keep_freq, args.print_freq) == (1, 1, 20, 20)
        assert (args.amp, args.disable_cudnn_benchmark, args.output_dir) == ("0", False, "./output/")
        assert (args.save_iter_freq, args.log_dir, args.gradient_checkpointing) == (0, None, False)

    def test_train_dataset_is_required(self, capsys):
        with pytest.raises(SystemExit):
            training.get_args_parser().parse_args([])
        assert "--train_dataset" in capsys.readouterr().err

    @pytest.mark.parametrize("amp,dtype", [("0", None), ("1", torch.float16), ("fp16", torch.float16),
                                           ("bf16", torch.bfloat16), (0, None), (1, torch.float16), (True, torch.float16)])
    def test_amp_dtype(self, amp, dtype):
        assert training.amp_dtype(amp) is dtype

    def test_amp_needs_cuda(self):
        args = training.get_args_parser().parse_args(["--train_dataset", "x", "--amp", "bf16"])
        with pytest.raises(ValueError, match="--amp bf16 needs a CUDA GPU.*--amp 0"):
            training.check_args(args, torch.device("cpu"))
        training.check_args(args, torch.device("cuda"))  # fine where there is a GPU

    @pytest.mark.parametrize("flag,value", [("--batch_size", "0"), ("--accum_iter", "0"), ("--save_iter_freq", "-1"),
                                            ("--warmup_epochs", "-1")])
    def test_bad_values(self, flag, value):
        args = training.get_args_parser().parse_args(["--train_dataset", "x", flag, value])
        with pytest.raises(ValueError, match=flag):
            training.check_args(args, torch.device("cpu"))


# ------------------------------------------------------------------------------------------------------ builders
class TestBuilders:
    def test_model_from_string(self):
        model = training.build_model(TINY_DUST3R)
        assert type(model) is AsymmetricCroCo3DStereo and model.enc_embed_dim == 32 and model.landscape_only
        assert not any(p.is_meta for p in model.parameters())

    def test_full_size_model_on_meta(self):
        model = training.build_model("AsymmetricCroCo3DStereo(patch_embed_cls='ManyAR_PatchEmbed', enc_embed_dim=1024, "
                                     "enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, "
                                     "dec_num_heads=12, img_size=(512, 512), head_type='dpt')", device="meta")
        assert all(p.is_meta for p in model.parameters()) and len(model.enc_blocks) == 24

    @pytest.mark.parametrize("text,match", [
        ("__import__('os').system('echo hi')", "bare class name|not allowed"),
        ("AsymmetricCroCo3DStereo(img_size=__import__('os').getcwd())", "unsupported call"),
        ("os.system('echo hi')", "bare class name"),
        ("Linear(3, 4)", "not allowed"),
        ("AsymmetricCroCo3DStereo(no_such_argument=1)", "unknown argument"),
        ("AsymmetricCroCo3DStereo(img_size=(32, 32)) + 1", "must be a call"),
    ])
    def test_model_string_refused(self, text, match):
        with pytest.raises(ValueError, match=match):
            training.build_model(text)

    def test_split_dataset_sum(self):
        text = "100 @ A(x='a+b', y=[(1, 2)]) + 2 * B(z=3) + (C() + D())"
        assert training.split_dataset_sum(text) == ["100 @ A(x='a+b', y=[(1, 2)])", "2 * B(z=3)", "C()", "D()"]
        assert [training.test_set_name(t) for t in training.split_dataset_sum(text)] == \
            ["100 @ A", "2 * B", "C", "D"]

    def test_no_test_dataset(self):
        assert training.build_test_loaders("", 2, 0) == {} and training.build_test_loaders("[None]", 2, 0) == {}

    def test_pretrained_dust3r_into_mast3r_logs_keys(self, tmp_path, caplog):
        """A DUSt3R checkpoint into a MASt3R of the same backbone: the backbone loads, the heads are reported."""
        dust3r = training.build_model(TINY_DUST3R)
        path = tmp_path / "dust3r.pth"
        torch.save({"model": dust3r.state_dict(), "args": argparse.Namespace(model=TINY_DUST3R)}, path)
        mast3r = training.build_model(TINY_DUST3R.replace("AsymmetricCroCo3DStereo", "AsymmetricMASt3R")
                                      .replace("head_type='linear', output_mode='pts3d'",
                                               "head_type='catconv', output_mode='pts3d+desc8'"))
        with caplog.at_level(logging.INFO, logger="dust3r.training.builders"):
            missing, unexpected = training.load_pretrained_weights(mast3r, str(path))
        assert missing and all(k.startswith("downstream_head") for k in missing)
        assert sorted(unexpected) == sorted(k for k in dust3r.state_dict() if k.startswith("downstream_head"))
        for key, value in dust3r.state_dict().items():
            if not key.startswith("downstream_head"):
                torch.testing.assert_close(mast3r.state_dict()[key], value, rtol=0, atol=0)
        assert f"missing keys: {', '.join(missing)}" in caplog.text
        assert f"unexpected keys: {', '.join(unexpected)}" in caplog.text

    def test_pretrained_refuses_pickled_code(self, tmp_path):
        path = tmp_path / "evil.pth"
        torch.save({"model": {}, "hook": threading.Thread}, path)  # a class outside the weights-only allow-list
        with pytest.raises(Exception, match="refused|allow-list"):
            training.load_pretrained_weights(training.build_model(TINY_DUST3R), str(path))

    def test_gradient_checkpointing_hook(self):
        class WithHook(torch.nn.Module):
            enabled = False

            def set_gradient_checkpointing(self, value):
                self.enabled = value

        model = WithHook()
        training.enable_gradient_checkpointing(model)
        assert model.enabled is True
        model = training.build_model(TINY_DUST3R)  # the CroCo-based models have the hook
        training.enable_gradient_checkpointing(model)
        assert model.gradient_checkpointing is True
        with pytest.raises(ValueError, match="does not support gradient checkpointing"):
            training.enable_gradient_checkpointing(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------- the epoch
class _ScaleModel(torch.nn.Module):
    """A one-parameter 'model' with the two-view interface: pred = w * mean(img) per pair."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, view1, view2):
        return ({"x": self.w * view1["img"].mean(dim=(1, 2, 3))}, {"x": self.w * view2["img"].mean(dim=(1, 2, 3))})


def _criterion(view1, view2, pred1, pred2):
    loss = ((pred1["x"] - 1) ** 2).mean() + ((pred2["x"] - 1) ** 2).mean()
    return loss, {"half": loss / 2}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        view = {"img": torch.full((3, 4, 4), 0.1 * (i + 1)), "idx": i, "instance": str(i)}
        return view, dict(view)


def _loop_args(**kw):
    base = dict(accum_iter=1, amp=0, print_freq=1, lr=0.1, min_lr=0.0, warmup_epochs=1.0, epochs=2)
    return argparse.Namespace(**{**base, **kw})


class TestTrainOneEpoch:
    def _epoch(self, args, epoch=0, start_iter=0, n=8):
        model = _ScaleModel()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        loader = torch.utils.data.DataLoader(_Batches(n), batch_size=1, shuffle=False)
        lrs, steps, seen = [], [], []
        real_step = optimizer.step

        def step(*a, **k):
            lrs.append(optimizer.param_groups[0]["lr"])
            return real_step(*a, **k)

        optimizer.step = step
        criterion = lambda v1, v2, p1, p2: (seen.append(int(v1["idx"][0])), _criterion(v1, v2, p1, p2))[1]  # noqa
        stats = training.train_one_epoch(model, criterion, loader, optimizer, "cpu", epoch,
                                         NativeScalerWithGradNormCount(enabled=False, device="cpu"), args,
                                         start_iter=start_iter, on_optimizer_step=lambda e, k: steps.append((e, k)))
        return stats, lrs, steps, seen

    def test_accumulation_and_schedule(self):
        """lr set every accum_iter batches from epoch + step / len (the first update of epoch 0 uses lr 0)."""
        args = _loop_args(accum_iter=2)
        stats, lrs, steps, seen = self._epoch(args)
        assert seen == [0, 1, 2, 3, 4, 5, 6, 7]  # symmetrized batch: view1 holds pair 0 first
        assert steps == [(0, 2), (0, 4), (0, 6), (0, 8)]
        assert lrs == pytest.approx([cosine_warmup_lr(k / 8, 0.1, 0.0, 1.0, 2) for k in (0, 2, 4, 6)], rel=1e-12)
        assert lrs[0] == 0.0
        assert set(stats) == {"lr", "epoch", "loss", "half"} and stats["half"] == pytest.approx(stats["loss"] / 2)

    def test_resume_position(self):
        """start_iter skips those batches (never loaded) and continues the schedule from there."""
        args = _loop_args(accum_iter=2)
        _, lrs, steps, seen = self._epoch(args, epoch=1, start_iter=4)
        assert seen == [4, 5, 6, 7]
        assert steps == [(1, 6), (1, 8)]
        assert lrs == pytest.approx([cosine_warmup_lr(1 + k / 8, 0.1, 0.0, 1.0, 2) for k in (4, 6)], rel=1e-12)

    def test_non_finite_loss_stops(self):
        model = _ScaleModel()
        loader = torch.utils.data.DataLoader(_Batches(2), batch_size=1)
        nan = lambda v1, v2, p1, p2: (p1["x"].sum() * float("nan"), {})  # noqa: E731
        with pytest.raises(FloatingPointError, match="training loss is nan at epoch 0, iteration 0"):
            training.train_one_epoch(model, nan, loader, torch.optim.SGD(model.parameters(), lr=0.1), "cpu", 0,
                                     NativeScalerWithGradNormCount(enabled=False, device="cpu"), _loop_args())

    def test_test_one_epoch(self):
        model = _ScaleModel()
        loader = torch.utils.data.DataLoader(_Batches(3), batch_size=1)
        results = training.test_one_epoch(model, _criterion, loader, "cpu", 1, _loop_args())
        expected = [2 * (0.1 * (i + 1) - 1) ** 2 for i in range(3)]
        assert results["loss_avg"] == pytest.approx(sum(expected) / 3)
        assert results["loss_med"] == pytest.approx(sorted(expected)[1])
        assert results["half_avg"] == pytest.approx(sum(expected) / 6)

    def test_loss_of_one_batch_moves_every_tensor_but_metadata(self):
        """As the original: everything but depthmap, dataset, label, instance, idx, true_shape, rng goes to the
        device (the MASt3R losses read sky_mask, is_metric_scale, valid_corres there)."""
        from dust3r.inference import loss_of_one_batch

        moved = set()

        class Tracked(torch.Tensor):
            def to(self, *args, **kwargs):
                moved.add(self.key)
                return self

        def tensor(key):
            t = torch.zeros(2, 3).as_subclass(Tracked)
            t.key = key
            return t

        keys = ("img", "pts3d", "valid_mask", "sky_mask", "is_metric_scale", "corres", "valid_corres",
                "camera_pose", "camera_intrinsics", "depthmap", "true_shape", "idx", "rng")
        batch = tuple({k: tensor(k) for k in keys} | {"instance": ["a", "b"]} for _ in range(2))
        loss_of_one_batch(batch, lambda v1, v2: ({}, {}), None, "cpu")
        assert moved == set(keys) - {"depthmap", "true_shape", "idx", "rng"}

    def test_skip_batches(self):
        loader = torch.utils.data.DataLoader(_Batches(7), batch_size=2, shuffle=False)
        skipped = training.skip_batches(loader, 2)
        assert len(skipped) == 2 and [b[0]["idx"].tolist() for b in skipped] == [[4, 5], [6]]
        assert training.skip_batches(loader, 0) is loader

    def test_loader_train_schedule_fixture(self):
        """croco's schedule at the fixture's fractional epochs (command 0: lr 1e-4, min 1e-6, warm-up 1, 10)."""
        facts = LOOP_FACTS["args_from_command_0"]
        for epoch_f, lr in LOOP_FACTS["adjust_learning_rate(epoch_f)"]:
            assert cosine_warmup_lr(epoch_f, facts["lr"], facts["min_lr"], facts["warmup_epochs"],
                                    facts["epochs"]) == pytest.approx(lr, rel=1e-12)


# ------------------------------------------------------------------------------------------------- checkpoints
class TestCheckpoints:
    def _state(self, tmp_path):
        model = _ScaleModel()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.95))
        view = {"img": torch.ones(1, 3, 4, 4)}
        model(view, view)[0]["x"].sum().backward()
        optimizer.step()
        args = argparse.Namespace(output_dir=str(tmp_path), model="x")
        return args, model, optimizer, NativeScalerWithGradNormCount(enabled=False, device="cpu")

    def test_mid_epoch_round_trip(self, tmp_path):
        args, model, optimizer, scaler = self._state(tmp_path)
        path = training.save_checkpoint(args, 2, model, optimizer, scaler, "last", best_so_far=0.5,
                                        data_iter_step=6, iters_per_epoch=10)
        assert path == tmp_path / "checkpoint-last.pth"
        ckpt = load_checkpoint_safe(path)  # weights_only
        assert set(ckpt) == {"model", "optimizer", "scaler", "args", "epoch", "best_so_far", "data_iter_step",
                             "iters_per_epoch"}
        model2 = _ScaleModel()
        optimizer2 = torch.optim.AdamW(model2.parameters(), lr=0.1, betas=(0.9, 0.95))
        state = training.resume_checkpoint(path, model2, optimizer2, scaler, iters_per_epoch=10)
        assert (state.start_epoch, state.start_iter, state.best_so_far) == (3, 6, 0.5)
        assert model2.w.item() == model.w.item()
        assert optimizer2.state_dict()["state"][0]["step"] == 1

    def test_position_of_another_epoch_length_restarts_the_epoch(self, tmp_path, caplog):
        args, model, optimizer, scaler = self._state(tmp_path)
        path = training.save_checkpoint(args, 0, model, optimizer, scaler, "last", data_iter_step=6,
                                        iters_per_epoch=10)
        state = training.resume_checkpoint(path, model, optimizer, scaler, iters_per_epoch=12)
        assert (state.start_epoch, state.start_iter, state.best_so_far) == (1, 0, math.inf)
        assert "restarting epoch 1 from its first batch" in caplog.text

    def test_epoch_boundary_has_no_position(self, tmp_path):
        args, model, optimizer, scaler = self._state(tmp_path)
        ckpt = load_checkpoint_safe(training.save_checkpoint(args, 4, model, optimizer, scaler, "7"))
        assert set(ckpt) == {"model", "optimizer", "scaler", "args", "epoch"} and ckpt["epoch"] == 4

    @pytest.mark.parametrize("value,pauses", [("", [0, 0, 0]), ("2", [2, 2, 2]), ("3@2", [0, 3, 0])])
    def test_pause_hook(self, monkeypatch, value, pauses):
        monkeypatch.setenv(training.SAVE_PAUSE_ENV, value)
        monkeypatch.setattr(checkpointing, "_saves_done", 0)
        assert [checkpointing._test_pause() for _ in range(3)] == pauses

    def test_write_is_atomic(self, tmp_path, monkeypatch):
        """A save that fails half-way leaves the previous checkpoint intact and no temporary file."""
        args, model, optimizer, scaler = self._state(tmp_path)
        training.save_checkpoint(args, 0, model, optimizer, scaler, "last")

        def broken_save(obj, f, *a, **k):
            Path(f).write_bytes(b"PK\x03\x04 half")
            raise OSError("disk full")

        monkeypatch.setattr(checkpointing.torch, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            training.save_checkpoint(args, 1, model, optimizer, scaler, "last")
        monkeypatch.undo()
        assert load_checkpoint_safe(tmp_path / "checkpoint-last.pth")["epoch"] == 0
        assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pth"]


# ------------------------------------------------------------------------------------------- DUSt3R end to end
def test_dust3r_train_in_process(tmp_path):
    """``dust3r.training.train(args)`` as downstream projects call it: DUSt3R's datasets, criterion and model."""
    from datasets_preprocess.make_synthetic_co3d import main as make_synthetic_co3d

    root = make_synthetic_co3d(str(tmp_path / "data"), n_sequences=1, n_frames=6, image_size=(96, 72),
                               n_test_sequences=1)
    args = training.get_args_parser().parse_args([
        "--train_dataset", f"4 @ Co3d(split='train', ROOT={root!r}, aug_crop=16, mask_bg='rand', "
                           "resolution=[(64, 48), (64, 32)], transform=ColorJitter)",
        "--test_dataset", f"2 @ Co3d(split='test', ROOT={root!r}, resolution=(64, 48), seed=777)",
        "--model", TINY_DUST3R, "--lr", "1e-3", "--warmup_epochs", "0", "--epochs", "1", "--batch_size", "2",
        "--num_workers", "0", "--print_freq", "1", "--output_dir", str(tmp_path / "out")])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        training.train(args)
    finally:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint_safe(tmp_path / "out" / "checkpoint-last.pth")
    assert ckpt["epoch"] == 0 and int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == 2
    log = [json.loads(line) for line in (tmp_path / "out" / "log.txt").read_text().splitlines()]
    assert {"train_loss", "train_Regr3D_pts3d_1", "2 @ Co3d_loss_med"} <= set(log[-1])
    model = AsymmetricCroCo3DStereo.from_pretrained(str(tmp_path / "out" / "checkpoint-best.pth"))
    assert type(model) is AsymmetricCroCo3DStereo


# ---------------------------------------------------------------------------------------------------- parallel
def _square(x):
    return x * x


def _add(a, b):
    return a + b


class TestParallel:
    @pytest.mark.parametrize("workers", [1, 2, 0])
    def test_threads_keep_order(self, workers):
        assert parallel_threads(_square, range(20), workers=workers, disable=True) == [x * x for x in range(20)]

    def test_star_and_kw_args(self):
        assert parallel_threads(_add, [(1, 2), (3, 4), (5, 6)], workers=2, star_args=True, disable=True) == [3, 7, 11]
        assert parallel_threads(_add, [dict(a=1, b=2), dict(a=3, b=4)], workers=2, kw_args=True,
                                disable=True) == [3, 7]

    def test_front_items_run_in_this_thread(self):
        threads = []
        parallel_threads(lambda x: threads.append(threading.current_thread().name), range(5), workers=2,
                         front_num=2, disable=True)
        assert threads[:2] == [threading.current_thread().name] * 2

    def test_generator_input(self):
        assert parallel_threads(_square, (x for x in range(5)), workers=2, disable=True) == [0, 1, 4, 9, 16]

    def test_processes(self):
        assert parallel_processes(_add, [(1, 2), (3, 4), (5, 6)], workers=2, star_args=True, disable=True) == \
            [3, 7, 11]


def test_build_optimizer_matches_the_original_adamw_update():
    """The fused AdamW takes the same step as the original's per-tensor AdamW over the same parameter groups."""
    from croco.utils.misc import get_parameter_groups
    from dust3r.training import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    twin, start = copy.deepcopy(net), copy.deepcopy(net)
    ours = build_optimizer(net, lr=1e-2, weight_decay=0.05)
    ref = torch.optim.AdamW(get_parameter_groups(twin, 0.05), lr=1e-2, betas=(0.9, 0.95), foreach=False)
    assert [g["weight_decay"] for g in ours.param_groups] == [g["weight_decay"] for g in ref.param_groups]
    assert ours.param_groups[0]["betas"] == (0.9, 0.95)
    x = torch.randn(8, 6)
    for _ in range(3):
        for model, opt in ((net, ours), (twin, ref)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q, p0 in zip(net.parameters(), twin.parameters(), start.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(p, p0)  # the steps moved every parameter
