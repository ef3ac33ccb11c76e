"""MASt3R training front end (``train.py`` -> :mod:`mast3r.training`): the two command lines of the original README
(tests/data/spec/train_commands.md) parse into the right datasets, criteria and model; strings with code are
refused; a tiny run of the README's demo command (synthetic Co3d-layout data, tiny model) trains, checkpoints in
the official format and resumes, also from within an epoch, on the exact sampler position."""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest
import torch

import dust3r.training as dust3r_training
import mast3r.training as mast3r_training
from croco.utils.misc import cosine_warmup_lr, load_checkpoint_safe
from datasets_preprocess.make_synthetic_co3d import main as make_synthetic_co3d
from dust3r.datasets.parse import describe_dataset, flat_calls
from mast3r.datasets import MASt3RBaseStereoViewDataset
from mast3r.datasets import reader_class as mast3r_reader_class
from mast3r.model import AsymmetricMASt3R

DATA = Path(__file__).resolve().parents[1] / "data"
SPEC = (DATA / "spec" / "train_commands.md").read_text()
LOOP_FACTS = json.loads((DATA / "training" / "loop" / "train_loop.json").read_text())["train_loop"]
DATASET_RECORD = json.loads((DATA / "training" / "datasets" / "train_commands.json").read_text())

#: a MASt3R small enough to train on 2 busy CPU cores (light catconv head, 16-D descriptors)
TINY_MODEL = ("AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(64, 64), "
              "head_type='catconv:hidden_dim_factor=2.0', output_mode='pts3d+desc16', depth_mode=('exp', -inf, inf), "
              "conf_mode=('exp', 1, inf), enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, "
              "dec_depth=2, dec_num_heads=2, two_confs=True)")


def command_argv(index: int) -> list:
    """Arguments after ``train.py`` of the ``index``-th command line of train_commands.md."""
    blocks = re.findall(r"```bash\n(.*?)```", SPEC, re.S)
    argv = shlex.split(blocks[index].replace("\\\n", " "))
    return argv[argv.index("train.py") + 1:]


def _flag(argv: list, name: str) -> str:
    return argv[argv.index(name) + 1]


def _pairs(argv: list) -> dict:
    """``--name value`` / ``--switch`` arguments as an ordered dict (a switch maps to None)."""
    out, i = {}, 0
    while i < len(argv):
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        out[argv[i]] = argv[i + 1] if has_value else None
        i += 2 if has_value else 1
    return out


def _shrink_dataset(text: str, root, size: int) -> str:
    text = text.replace("ROOT='data/co3d_subset_processed'", f"ROOT={str(root)!r}")
    text = re.sub(r"resolution=\[[^\]]*\]", "resolution=[(64, 48), (64, 32)]", text)
    text = text.replace("resolution=(512,384)", "resolution=(64, 48)")
    text = re.sub(r"n_corres=\d+", "n_corres=64", text)
    return re.sub(r"^\d+ @", f"{size} @", text)


def demo_argv(root, output_dir, train_size: int = 100, test_size: int = 4, **flags) -> list:
    """The README's demo command (command 0) with the data ROOT at ``root``, the tiny model, small resolutions and
    ``n_corres``, a higher lr, few epochs and no ``--pretrained``; the criteria strings stay verbatim. ``flags``
    set ``--name value`` (a value of None drops the flag)."""
    settings = _pairs(command_argv(0))
    del settings["--pretrained"]
    settings["--train_dataset"] = _shrink_dataset(settings["--train_dataset"], root, train_size)
    settings["--test_dataset"] = _shrink_dataset(settings["--test_dataset"], root, test_size)
    settings.update({"--model": TINY_MODEL, "--output_dir": str(output_dir), "--lr": "3e-3", "--warmup_epochs": "0.25",
                     "--epochs": "4", "--batch_size": "2", "--accum_iter": "1", "--keep_freq": "2",
                     "--eval_freq": "2", "--print_freq": "1", "--num_workers": "0"})
    for key, value in flags.items():
        if value is None:
            settings.pop(f"--{key}", None)
        else:
            settings[f"--{key}"] = str(value)
    argv = []
    for name, value in settings.items():
        argv += [name] if value is None else [name, value]
    return argv


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on shared, busy CPUs two OpenMP threads make these tiny steps ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic_co3d(tmp_path_factory) -> Path:
    """Synthetic data in the Co3d processed layout (2 train sequences, 1 test sequence, 12 frames of 128x96)."""
    return Path(make_synthetic_co3d(str(tmp_path_factory.mktemp("synthetic_co3d")), n_sequences=2, n_frames=12,
                                    image_size=(128, 96), seed=0))


# ------------------------------------------------------------------------------------------------- command lines
class TestCommandLines:
    @pytest.mark.parametrize("index", [0, 1])
    def test_flags(self, index):
        args = mast3r_training.get_args_parser().parse_args(command_argv(index))
        assert (args.lr, args.min_lr, args.warmup_epochs, args.epochs) == (1e-4, 1e-6, 1, 10)
        assert (args.batch_size, args.accum_iter, args.save_freq, args.keep_freq, args.eval_freq) == (4, 4, 1, 5, 1)
        assert args.disable_cudnn_benchmark is True
        assert args.output_dir == "checkpoints/mast3r_demo"
        assert args.pretrained == "checkpoints/DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth"
        # the original's defaults for everything the command does not set
        assert (args.seed, args.weight_decay, args.blr, args.amp, args.print_freq) == (0, 0.05, 1.5e-4, "0", 20)

    def test_default_model_is_mast3r(self):
        args = mast3r_training.get_args_parser().parse_args(["--train_dataset", "x"])
        assert args.model == "AsymmetricMASt3R(patch_embed_cls='ManyAR_PatchEmbed')"

    @pytest.mark.parametrize("index", [0, 1])
    def test_model_on_meta_device(self, index):
        model = dust3r_training.build_model(_flag(command_argv(index), "--model"), device="meta")
        assert type(model) is AsymmetricMASt3R
        assert all(p.is_meta for p in model.parameters())  # nothing allocated
        assert (model.enc_embed_dim, len(model.enc_blocks), len(model.dec_blocks), len(model.dec_blocks2)) == \
            (1024, 24, 12, 12)
        assert (model.head_type, model.output_mode, model.two_confs) == ("catmlp+dpt", "pts3d+desc24", True)
        assert type(model.patch_embed).__name__ == "ManyAR_PatchEmbed" and model.landscape_only is True
        assert 680e6 < sum(p.numel() for p in model.parameters()) < 700e6  # MASt3R ViT-L/ViT-B

    @pytest.mark.parametrize("index", [0, 1])
    def test_criteria(self, index):
        args = mast3r_training.get_args_parser().parse_args(command_argv(index))
        train_criterion, test_criterion = mast3r_training.build_criteria(args)
        # the original prints ConfMatchingLoss as ConfLoss (fixture README, "Totals and details")
        assert repr(train_criterion) == "ConfLoss(Regr3D(L21Loss())) + 0.075*ConfLoss(MatchingLoss(InfoNCE()))"
        assert repr(test_criterion) == "Regr3D_ScaleShiftInv(L21Loss()) + -1*MatchingLoss(APLoss())"
        matching = test_criterion.losses[1][0] if hasattr(test_criterion, "losses") else None
        assert matching is None or type(matching).__module__ == "mast3r.losses"

    @pytest.mark.parametrize("index", [0, 1])
    def test_dataset_structure(self, index):
        """Classes and ``N @`` sizes as the fixture records them; every class is MASt3R's (correspondences)."""
        args = mast3r_training.get_args_parser().parse_args(command_argv(index))
        record = DATASET_RECORD["commands"][index]["strings"]
        for role, text in (("train_dataset", args.train_dataset), ("test_dataset", args.test_dataset)):
            calls = flat_calls(describe_dataset(text))
            assert [(c.cls, size) for c, size in calls] == [(a["class"], a["resized_to"]) for a in record[role]["ast"]]
            assert sum(size for _, size in calls) == record[role]["standin_eval"]["len"]
            for call, _ in calls:
                assert issubclass(mast3r_reader_class(call.cls), MASt3RBaseStereoViewDataset)
        names = [dust3r_training.test_set_name(t) for t in dust3r_training.split_dataset_sum(args.test_dataset)]
        assert names == record["test_dataset"]["test_loader_names"]

    def test_demo_datasets_build(self, synthetic_co3d):
        """Command 0's dataset strings, ROOT pointed at the synthetic data, build MASt3R Co3d loaders."""
        args = mast3r_training.get_args_parser().parse_args(command_argv(0))
        text = args.train_dataset.replace("data/co3d_subset_processed", str(synthetic_co3d))
        loader = mast3r_training.build_dataset(text, args.batch_size, 0)
        resized = loader.dataset
        assert len(resized) == 1000 and len(loader) == 1000 // 4
        co3d = resized.dataset
        assert isinstance(co3d, MASt3RBaseStereoViewDataset) and type(co3d).__name__ == "Co3d"
        assert (co3d.n_corres, co3d.nneg, co3d.aug_crop) == (8192, 0.5, "auto")
        assert co3d._resolutions == [(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)]
        test_text = args.test_dataset.replace("data/co3d_subset_processed", str(synthetic_co3d))
        loaders = dust3r_training.build_test_loaders(test_text, 4, 0, namespace="mast3r")
        assert list(loaders) == ["100 @ Co3d"]  # the original's test-set name: text before the "("
        assert len(loaders["100 @ Co3d"].dataset) == 100 and loaders["100 @ Co3d"].dataset.dataset.n_corres == 1024


# ------------------------------------------------------------------------------------------------------ refusals
PAYLOAD = "__import__('os').system('touch {marker}')"


@pytest.mark.parametrize("flag,template", [
    ("--model", "{payload}"),
    ("--model", "AsymmetricMASt3R(img_size={payload})"),
    ("--train_criterion", "ConfLoss({payload}, alpha=0.2)"),
    ("--test_criterion", "{payload}"),
    ("--train_dataset", "100 @ Co3d(split={payload})"),
    ("--test_dataset", "{payload}"),
])
def test_code_in_strings_is_refused(tmp_path, synthetic_co3d, flag, template):
    """A string with a call outside the allow-lists stops train.py with a ValueError; nothing is executed."""
    import train

    marker = tmp_path / "pwned"
    argv = demo_argv(synthetic_co3d, tmp_path / "out")
    argv[argv.index(flag) + 1] = template.format(payload=PAYLOAD.format(marker=marker))
    with pytest.raises(ValueError, match=r"not allowed|unsupported|allowed|__import__"):
        train.main(argv)
    assert not marker.exists()
    assert not list((tmp_path / "out").glob("checkpoint-*.pth"))


def test_amp_on_cpu_is_refused(tmp_path, synthetic_co3d, monkeypatch):
    import train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="needs a CUDA GPU.*--amp 0"):
        train.main(demo_argv(synthetic_co3d, tmp_path, amp="bf16"))


def test_dataset_smaller_than_a_batch_is_refused(tmp_path, synthetic_co3d):
    import train

    with pytest.raises(ValueError, match=r"has 1 pairs, fewer than one batch per process \(--batch_size 2 x 1"):
        train.main(demo_argv(synthetic_co3d, tmp_path, train_size=1))


# ------------------------------------------------------------------------------------------- tiny in-process run
class _Recorder:
    """Wraps ``loss_of_one_batch`` in the loop: records each batch's sample indices, optionally crashes after
    ``crash_after`` batches (a killed run, without a subprocess)."""

    def __init__(self, real, crash_after=None):
        self.real, self.crash_after, self.seen = real, crash_after, []

    def __call__(self, batch, model, *args, **kwargs):
        if not model.training:  # a test batch
            return self.real(batch, model, *args, **kwargs)
        if self.crash_after is not None and len(self.seen) == self.crash_after:
            raise KeyboardInterrupt("simulated kill")
        self.seen.append(tuple(int(i) for i in batch[0]["idx"][0]))  # dataset index of each pair
        return self.real(batch, model, *args, **kwargs)


def _run(argv, monkeypatch, crash_after=None):
    import dust3r.training.loop as loop
    import train

    recorder = _Recorder(loop.loss_of_one_batch, crash_after)
    monkeypatch.setattr(loop, "loss_of_one_batch", recorder)
    try:
        train.main(argv)
    except KeyboardInterrupt:
        pass
    finally:
        monkeypatch.undo()
    return recorder.seen


def _log(output_dir):
    return [json.loads(line) for line in (Path(output_dir) / "log.txt").read_text().splitlines()]


def _adam_steps(ckpt) -> int:
    return int(next(iter(ckpt["optimizer"]["state"].values()))["step"])


def test_tiny_run_checkpoints_and_resume(tmp_path, synthetic_co3d, monkeypatch):
    """2 epochs of 4 batches: official-format checkpoints, log.txt, tensorboard; then the same command with
    --epochs 3 resumes from checkpoint-last.pth and trains exactly one more epoch."""
    out = tmp_path / "run"
    argv = demo_argv(synthetic_co3d, out, train_size=8, test_size=2, epochs=2, keep_freq=1, eval_freq=1)
    seen = _run(argv, monkeypatch)
    assert len(seen) == 8
    names = sorted(p.name for p in out.glob("checkpoint-*.pth"))
    assert names == ["checkpoint-1.pth", "checkpoint-2.pth", "checkpoint-best.pth", "checkpoint-final.pth",
                     "checkpoint-last.pth"]
    assert list(out.glob("events.out.tfevents.*")) and not list(out.glob(".*.tmp"))
    ckpt = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert set(ckpt) == {"model", "optimizer", "scaler", "args", "epoch", "best_so_far"}
    assert ckpt["epoch"] == 1 and ckpt["args"].model == TINY_MODEL and _adam_steps(ckpt) == 8
    assert math.isfinite(ckpt["best_so_far"])
    # lr of the last update: the schedule at epoch 1 + 3/4 (warm-up 0.25 epoch, half cosine to 2 epochs)
    expected_lr = cosine_warmup_lr(1.75, 3e-3, 1e-6, 0.25, 2)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected_lr, rel=1e-12)
    model = AsymmetricMASt3R.from_pretrained(str(out / "checkpoint-last.pth"))
    final = load_checkpoint_safe(out / "checkpoint-final.pth")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, final["model"][key], rtol=0, atol=0)
    log = _log(out)
    assert [entry["epoch"] for entry in log] == [0, 1, 2]
    assert {"train_loss", "train_lr", "train_MatchingLoss", "2 @ Co3d_loss_med"} <= set(log[2])

    seen_more = _run(demo_argv(synthetic_co3d, out, train_size=8, test_size=2, epochs=3, keep_freq=1,
                               eval_freq=1), monkeypatch)
    assert len(seen_more) == 4  # one more epoch, nothing repeated
    ckpt = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert ckpt["epoch"] == 2 and _adam_steps(ckpt) == 12
    assert [entry["epoch"] for entry in _log(out)] == [0, 1, 2, 2, 3]  # epoch 2 re-tested after the resume


def test_mid_epoch_resume_continues_the_sampler_order(tmp_path, synthetic_co3d, monkeypatch):
    """A run that dies mid-epoch resumes from its mid-epoch checkpoint-last.pth: the batches it trains after the
    restart are exactly those an uninterrupted run trains from that point (same sampler order, none repeated or
    skipped), and the optimizer has taken the same number of steps."""
    flags = dict(train_size=12, epochs=2, eval_freq=0, keep_freq=0, save_iter_freq=2)
    reference = _run(demo_argv(synthetic_co3d, tmp_path / "ref", **flags), monkeypatch)
    assert len(reference) == 12
    out = tmp_path / "killed"
    before = _run(demo_argv(synthetic_co3d, out, **flags), monkeypatch, crash_after=9)  # dies in epoch 1, batch 3
    assert before == reference[:9]
    ckpt = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert (ckpt["epoch"], ckpt["data_iter_step"], ckpt["iters_per_epoch"]) == (0, 2, 6)
    assert _adam_steps(ckpt) == 8
    after = _run(demo_argv(synthetic_co3d, out, **flags), monkeypatch)
    assert after == reference[8:]  # from batch 2 of epoch 1 on: the batch of the crash is trained again
    final = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert final["epoch"] == 1 and "data_iter_step" not in final and _adam_steps(final) == 12
    assert [entry["epoch"] for entry in _log(out)] == [0, 1, 2]


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_gpu(tmp_path, synthetic_co3d, amp):
    """Mixed precision on a CUDA GPU: finite losses, fp16 with an active loss scaler, bf16 without."""
    import train

    out = tmp_path / amp
    train.main(demo_argv(synthetic_co3d, out, train_size=8, test_size=2, epochs=1, eval_freq=1, amp=amp))
    ckpt = load_checkpoint_safe(out / "checkpoint-last.pth")
    assert _adam_steps(ckpt) == 4 and math.isfinite(_log(out)[-1]["train_loss"])
    assert ("scale" in ckpt["scaler"]) == (amp == "fp16")
    AsymmetricMASt3R.from_pretrained(str(out / "checkpoint-last.pth"), device="cuda")
