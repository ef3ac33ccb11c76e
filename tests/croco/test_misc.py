"""croco.utils.misc: the original's training helpers (schedule, parameter groups, meters, checkpoints, DDP)."""
from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from croco.utils import misc
from croco.utils.misc import (MetricLogger, NativeScalerWithGradNormCount, SmoothedValue, adjust_learning_rate,
                              all_reduce_mean, cosine_warmup_lr, get_parameter_groups, get_rank, get_world_size,
                              init_distributed_mode, is_dist_avail_and_initialized, is_main_process, load_model,
                              save_model)


class TestCosineWarmupLr:
    LR, MIN_LR, WARMUP, EPOCHS = 1e-3, 1e-5, 4, 20

    def lr(self, epoch):
        return cosine_warmup_lr(epoch, self.LR, self.MIN_LR, self.WARMUP, self.EPOCHS)

    def test_warmup_is_linear(self):
        assert self.lr(0) == 0.0
        assert self.lr(1) == pytest.approx(0.25e-3)
        assert self.lr(2.5) == pytest.approx(self.LR * 2.5 / 4)

    def test_cosine_part_closed_form(self):
        assert self.lr(4) == pytest.approx(self.LR)  # end of warm-up: the peak
        assert self.lr(12) == pytest.approx((self.LR + self.MIN_LR) / 2)  # middle of the cosine
        e = 7.3
        expected = self.MIN_LR + (self.LR - self.MIN_LR) * 0.5 * (1 + math.cos(math.pi * (e - 4) / 16))
        assert self.lr(e) == pytest.approx(expected, rel=1e-12)
        assert self.lr(20) == pytest.approx(self.MIN_LR)
        assert self.lr(25) == pytest.approx(self.MIN_LR)  # stays at min_lr after the end

    def test_reexported_in_dust3r_schedules(self):
        from dust3r.utils import schedules
        assert schedules.cosine_warmup_lr is cosine_warmup_lr


class TestAdjustLearningRate:
    def test_sets_lr_times_scale_per_group(self):
        a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
        opt = torch.optim.SGD([{"params": [a], "lr_scale": 0.5}, {"params": [b], "lr_scale": 0.1},
                               {"params": [c]}], lr=123.0)
        args = argparse.Namespace(lr=2e-4, min_lr=0.0, warmup_epochs=2, epochs=10)
        lr = adjust_learning_rate(opt, 1, args)
        assert lr == pytest.approx(1e-4)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-5, 1e-5, 1e-4])
        lr = adjust_learning_rate(opt, 6, args)
        assert lr == pytest.approx(1e-4)  # middle of the cosine, min_lr 0
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-5, 1e-5, 1e-4])


class _TinyCroCo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_depth, self.dec_depth = 2, 1
        self.patch_embed = torch.nn.Linear(3, 4)
        self.enc_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])
        self.enc_norm = torch.nn.LayerNorm(4)
        self.dec_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4)])
        self.head = torch.nn.Linear(4, 2)
        self.frozen = torch.nn.Parameter(torch.zeros(2, 2), requires_grad=False)


class TestGetParameterGroups:
    def test_biases_and_norms_get_no_decay(self):
        model = _TinyCroCo()
        groups = get_parameter_groups(model, weight_decay=0.05)
        by_wd = {g["weight_decay"]: g for g in groups}
        assert set(by_wd) == {0.0, 0.05}
        names = {id(p): n for n, p in model.named_parameters()}
        no_decay = {names[id(p)] for p in by_wd[0.0]["params"]}
        decay = {names[id(p)] for p in by_wd[0.05]["params"]}
        assert no_decay == {"patch_embed.bias", "enc_blocks.0.bias", "enc_blocks.1.bias", "enc_norm.weight",
                            "enc_norm.bias", "dec_blocks.0.bias", "head.bias"}
        assert decay == {"patch_embed.weight", "enc_blocks.0.weight", "enc_blocks.1.weight", "dec_blocks.0.weight",
                         "head.weight"}  # frozen left out
        assert all(g["lr_scale"] == 1.0 for g in groups)

    def test_skip_list_and_layer_decay(self):
        model = _TinyCroCo()
        groups = get_parameter_groups(model, 0.1, layer_decay=0.5, skip_list=("head.weight",))
        names = {id(p): n for n, p in model.named_parameters()}
        scale = {names[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
        # 3 layers -> scales 0.5 ** (4 - layer): embed 1/16, enc block 0 1/8, enc block 1 1/4, enc_norm 1/4,
        # dec block 0 1/2, head 1
        assert scale["patch_embed.weight"] == (0.0625, 0.1)
        assert scale["enc_blocks.0.weight"] == (0.125, 0.1)
        assert scale["enc_blocks.1.bias"] == (0.25, 0.0)
        assert scale["enc_norm.weight"] == (0.25, 0.0)
        assert scale["dec_blocks.0.weight"] == (0.5, 0.1)
        assert scale["head.weight"] == (1.0, 0.0)

    def test_bad_layer_decay(self):
        with pytest.raises(ValueError, match="layer_decay"):
            get_parameter_groups(_TinyCroCo(), 0.1, layer_decay=1.5)


class TestSmoothedValue:
    def test_statistics_on_known_sequence(self):
        v = SmoothedValue(window_size=3)
        for x in (1.0, 2.0, 3.0, 10.0):
            v.update(x)
        # window [2, 3, 10]
        assert v.median == 3.0
        assert v.avg == pytest.approx(5.0)
        assert v.max == 10.0
        assert v.value == 10.0
        assert v.global_avg == pytest.approx(16.0 / 4)
        assert str(v) == "3.0000 (4.0000)"

    def test_weighted_update(self):
        v = SmoothedValue()
        v.update(2.0, n=3)
        v.update(6.0, n=1)
        assert v.global_avg == pytest.approx(3.0)
        assert v.median == 2.0  # lower middle value, as torch.median

    def test_sync_without_distributed_is_noop(self):
        v = SmoothedValue()
        v.update(5.0)
        v.synchronize_between_processes()
        assert (v.count, v.total) == (1, 5.0)


class TestMetricLogger:
    def test_log_every_yields_every_item_and_logs(self, caplog):
        ml = MetricLogger(delimiter="  ")
        items = list(range(7))
        seen = []
        with caplog.at_level(logging.INFO, logger="croco.utils.misc"):
            for x in ml.log_every(items, print_freq=3, header="Epoch: [0]"):
                seen.append(x)
                ml.update(loss=torch.tensor(float(x)), lr=0.1, skipped=None)
        assert seen == items
        lines = [r.getMessage() for r in caplog.records]
        progress = [ln for ln in lines if "eta:" in ln]
        assert len(progress) == 3  # i = 0, 3, 6 (the last)
        assert progress[-1].startswith("Epoch: [0]  [6/7]")
        # the line after item i sees the updates of items 0..i: window median (lower middle) and global average
        assert "loss: 1.0000 (1.5000)" in progress[1]
        assert "loss: 3.0000 (3.0000)" in progress[-1]
        assert "Total time" in lines[-1]
        assert ml.loss.global_avg == pytest.approx(3.0)
        assert "skipped" not in ml.meters

    def test_max_iter_and_attributes(self):
        ml = MetricLogger()
        assert list(ml.log_every(range(10), 100, max_iter=4)) == [0, 1, 2, 3]
        with pytest.raises(AttributeError):
            ml.nothing
        with pytest.raises(TypeError, match="loss"):
            ml.update(loss="high")


def _train_setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = NativeScalerWithGradNormCount(enabled=False)
    return model, opt, scaler


class TestNativeScaler:
    def test_returns_grad_norm_and_steps(self):
        model, opt, scaler = _train_setup()
        before = model.weight.detach().clone()
        loss = (model(torch.ones(4, 3)) ** 2).sum()
        norm = scaler(loss, opt, parameters=model.parameters())
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert norm.item() == pytest.approx(grads.norm().item(), rel=1e-6)
        assert not torch.equal(before, model.weight)

    def test_clip_and_accumulate(self):
        model, opt, scaler = _train_setup()
        x = torch.ones(4, 3)
        (model(x) ** 2).sum().backward()
        single = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
        opt.zero_grad()
        assert scaler((model(x) ** 2).sum(), opt, update_grad=False) is None  # accumulate, no step
        norm = scaler((model(x) ** 2).sum(), opt, clip_grad=1e-3)  # parameters default to the optimizer's
        assert norm.item() == pytest.approx(2 * single, rel=1e-5)  # norm of the accumulated grads, before clipping
        clipped = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()
        assert clipped == pytest.approx(1e-3, rel=1e-4)

    def test_enabled_on_cpu_scales_and_unscales(self):
        norms, weights = [], []
        for enabled in (False, True):
            model, opt, _ = _train_setup()
            scaler = NativeScalerWithGradNormCount(enabled=enabled, device="cpu")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = (model(torch.ones(4, 3)) ** 2).float().sum()
            norms.append(scaler(loss, opt, parameters=model.parameters()).item())
            weights.append(model.weight.detach().clone())
            if enabled:
                assert scaler.state_dict()["scale"] == 2.0 ** 16  # the loss was scaled ...
        assert norms[1] == pytest.approx(norms[0], rel=1e-6)  # ... and the grads unscaled before the norm
        assert torch.allclose(weights[0], weights[1])


class TestCheckpoints:
    def _trained(self, tmp_path):
        model, opt, scaler = _train_setup()
        for _ in range(2):
            scaler((model(torch.ones(4, 3)) ** 2).sum(), opt, parameters=model.parameters())
        args = argparse.Namespace(output_dir=str(tmp_path), resume=None, model="Linear(3, 2)")
        return model, opt, scaler, args

    def test_round_trip(self, tmp_path):
        model, opt, scaler, args = self._trained(tmp_path)
        path = save_model(args, 7, model, opt, scaler, fname="last", best_so_far=0.25)
        assert path == tmp_path / "checkpoint-last.pth"
        assert os.listdir(tmp_path) == ["checkpoint-last.pth"]  # no temporary left
        ckpt = misc.load_checkpoint_safe(path)
        assert set(ckpt) == {"model", "optimizer", "scaler", "args", "epoch", "best_so_far"}
        assert ckpt["args"].model == "Linear(3, 2)"

        model2, opt2, scaler2 = _train_setup(seed=1)
        args2 = argparse.Namespace(resume=str(path))
        best = load_model(args2, model2, opt2, scaler2)
        assert best == 0.25
        assert args2.start_epoch == 8
        for k, v in model.state_dict().items():
            assert torch.equal(v, model2.state_dict()[k])
        s1, s2 = opt.state_dict(), opt2.state_dict()
        assert s2["state"][0]["step"] == s1["state"][0]["step"] == 2
        assert torch.equal(s1["state"][0]["exp_avg"], s2["state"][0]["exp_avg"])
        assert scaler2.state_dict() == scaler.state_dict()

    def test_no_resume(self):
        model, opt, scaler = _train_setup()
        args = argparse.Namespace(resume=None)
        assert load_model(args, model, opt, scaler) is None
        assert args.start_epoch == 0

    def test_pickled_code_refused(self, tmp_path):
        model, opt, scaler = _train_setup()
        path = tmp_path / "evil.pth"
        torch.save({"model": {}, "epoch": 0, "hook": os.getcwd}, path)  # a code object in the pickle
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            load_model(argparse.Namespace(resume=str(path)), model, opt, scaler)

    def test_killed_save_keeps_previous_checkpoint(self, tmp_path, monkeypatch):
        model, opt, scaler, args = self._trained(tmp_path)
        path = save_model(args, 1, model, opt, scaler, fname="last")
        good = path.read_bytes()

        def dying_save(obj, f, *a, **k):
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04 half a checkpoint")
            raise KeyboardInterrupt("killed during the write")

        monkeypatch.setattr(misc.torch, "save", dying_save)
        with pytest.raises(KeyboardInterrupt):
            save_model(args, 2, model, opt, scaler, fname="last")
        monkeypatch.undo()
        assert path.read_bytes() == good
        assert os.listdir(tmp_path) == ["checkpoint-last.pth"]
        assert misc.load_checkpoint_safe(path)["epoch"] == 1


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.usefixtures("restore_root_logger")
class TestDistributed:
    def test_setup_for_distributed_only_configures_logging(self):
        import builtins
        print_before = builtins.print
        misc.setup_for_distributed(False)
        assert logging.getLogger().level == logging.WARNING  # non-main ranks: warnings only
        misc.setup_for_distributed(True)
        assert logging.getLogger().level == logging.INFO
        assert builtins.print is print_before  # unlike the original, print is not replaced

    def test_without_env_vars_single_process(self, monkeypatch):
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            monkeypatch.delenv(var, raising=False)
        args = argparse.Namespace()
        init_distributed_mode(args)
        assert args.distributed is False
        assert not is_dist_avail_and_initialized()
        assert (get_world_size(), get_rank(), is_main_process()) == (1, 0, True)
        assert all_reduce_mean(3.5) == 3.5

    def test_nodist_flag_wins(self, monkeypatch):
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "2")
        args = argparse.Namespace(nodist=True)
        init_distributed_mode(args)
        assert args.distributed is False and not is_dist_avail_and_initialized()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    args = argparse.Namespace()
    init_distributed_mode(args)
    try:
        mean = all_reduce_mean(float(rank + 1))
        meter = SmoothedValue()
        meter.update(10.0 * (rank + 1))
        meter.synchronize_between_processes()
        torch.save({"backend": args.dist_backend, "world": get_world_size(), "rank": get_rank(), "mean": mean,
                    "count": meter.count, "total": meter.total}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the two ranks would need nccl and two GPUs")
def test_two_process_gloo_all_reduce_mean(tmp_path):
    t0 = time.time()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    for r, res in enumerate(results):
        assert res == {"backend": "gloo", "world": 2, "rank": r, "mean": 1.5, "count": 2, "total": 30.0}
    assert time.time() - t0 < 60


def test_atomic_write_mode_follows_umask(tmp_path):
    """The file written by atomic_write (checkpoints, HF folders) gets the umask's mode, not mkstemp's 0600."""
    import os

    from croco.utils.misc import atomic_write

    old = os.umask(0o022)
    try:
        target = tmp_path / "ckpt.pth"
        atomic_write(target, lambda tmp: open(tmp, "wb").write(b"x"))
    finally:
        os.umask(old)
    assert target.read_bytes() == b"x"
    assert (target.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary left behind
