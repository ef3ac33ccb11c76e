"""The original's training helpers, kept under their names: many projects built on CroCo / DUSt3R / MASt3R import
them from ``croco.utils.misc``.

Metric logging (:class:`SmoothedValue`, :class:`MetricLogger`), mixed-precision backward with the gradient norm
(:class:`NativeScalerWithGradNormCount`), torchrun distributed setup (:func:`init_distributed_mode`), checkpoint
save / resume (:func:`save_model`, :func:`load_model`), parameter groups with weight-decay exclusions and layer
decay (:func:`get_parameter_groups`) and the warm-up + half-cosine learning-rate schedule
(:func:`cosine_warmup_lr`, :func:`adjust_learning_rate`).

Differences from the original, on purpose:

- :func:`setup_for_distributed` does **not** replace ``builtins.print`` for the whole process. Messages of this
  module go through the package logger; the function only configures :mod:`logging` (a timestamped handler at
  INFO on the main rank, WARNING and above on the other ranks). ``print(..., force=True)`` is not supported.
- :func:`init_distributed_mode` uses ``nccl`` when CUDA is available and ``gloo`` on CPU (the original always
  asks for ``nccl`` and calls ``torch.cuda.set_device``); rendezvous is torchrun's own (``env://``).
- Checkpoints are written atomically (temporary file beside the target, then ``os.replace``) and read with
  ``torch.load(weights_only=True)``, ``argparse.Namespace`` being the one extra class allowed.
- :class:`NativeScalerWithGradNormCount` uses ``torch.amp.GradScaler`` on CUDA or CPU and returns the gradient
  norm also when ``parameters`` is omitted (then the optimizer's parameters).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import uuid
import pickle
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = [
    "SmoothedValue", "MetricLogger", "setup_for_distributed", "is_dist_avail_and_initialized", "get_world_size",
    "get_rank", "is_main_process", "save_on_master", "init_distributed_mode", "NativeScalerWithGradNormCount",
    "get_grad_norm_", "atomic_write", "load_checkpoint_safe", "save_model", "load_model", "all_reduce_mean",
    "get_parameter_groups", "cosine_warmup_lr", "adjust_learning_rate",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- distributed state
def is_dist_avail_and_initialized() -> bool:
    """Whether ``torch.distributed`` is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes of the default group (1 when not distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group (0 when not distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def _reduce_device() -> torch.device:
    """Where a tensor must live for a collective of the default group (CUDA for nccl, else CPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(x: float) -> float:
    """Mean of the scalar ``x`` over all processes (``x`` itself when not distributed)."""
    world_size = get_world_size()
    if world_size == 1:
        return x
    t = torch.tensor(x, dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return (t / world_size).item()


# ------------------------------------------------------------------------------------------------- metric logging
class SmoothedValue:
    """A series of scalars: window statistics (``median``, ``avg``, ``max``, ``value``) over the last
    ``window_size`` values and the global average over all of them.

    Args:
        window_size: length of the window.
        fmt: ``str.format`` pattern over median, avg, global_avg, max, value.
    """

    def __init__(self, window_size: int = 20, fmt: Optional[str] = None):
        self.fmt = "{median:.4f} ({global_avg:.4f})" if fmt is None else fmt
        self.deque: deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        """Add ``value``, counted ``n`` times in the global average (the window holds it once)."""
        self.deque.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self) -> None:
        """Sum ``count`` and ``total`` over all processes (the window stays local, as in the original)."""
        if not is_dist_avail_and_initialized():
            return
        t = torch.tensor([self.count, self.total], dtype=torch.float64, device=_reduce_device())
        dist.barrier()
        dist.all_reduce(t)
        self.count, self.total = int(t[0].item()), t[1].item()

    @property
    def median(self) -> float:
        # torch's median: the lower of the two middle values for an even count, as the original
        return torch.tensor(list(self.deque)).median().item()

    @property
    def avg(self) -> float:
        return torch.tensor(list(self.deque), dtype=torch.float32).mean().item()

    @property
    def global_avg(self) -> float:
        return self.total / self.count

    @property
    def max(self) -> float:
        return max(self.deque)

    @property
    def value(self) -> float:
        return self.deque[-1]

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg, max=self.max,
                               value=self.value)


class MetricLogger:
    """Named :class:`SmoothedValue` meters, reachable as attributes (``metric_logger.loss``), and a progress
    line every ``print_freq`` iterations of :meth:`log_every`."""

    def __init__(self, delimiter: str = "\t"):
        self.meters = defaultdict(SmoothedValue)
        self.delimiter = delimiter

    def update(self, **kwargs: Any) -> None:
        """Add one value per meter; ``None`` values are skipped, one-element tensors read with ``.item()``."""
        for name, v in kwargs.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.item()
            if not isinstance(v, (float, int)):
                raise TypeError(f"MetricLogger.update: {name} must be a number or a one-element tensor, "
                                f"got {type(v).__name__}")
            self.meters[name].update(v)

    def __getattr__(self, attr: str) -> Any:
        meters = self.__dict__.get("meters")
        if meters is not None and attr in meters:
            return meters[attr]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{attr}'")

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def synchronize_between_processes(self) -> None:
        for meter in self.meters.values():
            meter.synchronize_between_processes()

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def log_every(self, iterable: Iterable, print_freq: int, header: Optional[str] = None,
                  max_iter: Optional[int] = None) -> Iterator:
        """Yield the items of ``iterable`` (at most ``max_iter``), logging a progress line (index, ETA, meters,
        iteration and data-loading times, peak CUDA memory) every ``print_freq`` items and after the last one."""
        header = header or ""
        n = len(iterable) if max_iter is None else min(max_iter, len(iterable))
        iter_time, data_time = SmoothedValue(fmt="{avg:.4f}"), SmoothedValue(fmt="{avg:.4f}")
        width = len(str(n))
        start = end = time.time()
        i = 0
        for obj in iterable:
            if i >= n:
                break
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if i % print_freq == 0 or i == n - 1:
                eta = datetime.timedelta(seconds=int(iter_time.global_avg * (n - i)))
                parts = [header, f"[{i:{width}d}/{n}]", f"eta: {eta}", str(self), f"time: {iter_time}",
                         f"data: {data_time}"]
                if torch.cuda.is_available():
                    parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2 ** 20:.0f}")
                logger.info(self.delimiter.join(parts))
            i += 1
            end = time.time()
        total = time.time() - start
        logger.info("%s Total time: %s (%.4f s / it)", header, datetime.timedelta(seconds=int(total)),
                    total / max(i, 1))


# -------------------------------------------------------------------------------------------- distributed set-up
def setup_for_distributed(is_master: bool) -> None:
    """Configure :mod:`logging`: a timestamped handler at INFO on the main rank, WARNING and above elsewhere.

    Unlike the original, ``builtins.print`` is left alone. A root logger that already has handlers keeps them;
    only its level is set.
    """
    level = logging.INFO if is_master else logging.WARNING
    logging.basicConfig(level=level, format="[%(asctime)s] %(message)s")
    logging.getLogger().setLevel(level)


def init_distributed_mode(args: argparse.Namespace) -> None:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` env vars).

    Sets ``args.distributed`` and, when distributed, ``args.rank``, ``args.world_size``, ``args.gpu``,
    ``args.dist_backend`` (``nccl`` with CUDA, ``gloo`` on CPU) and ``args.dist_url`` (default ``env://``).
    Without those variables, or with ``args.nodist``, the run is single-process (``args.distributed = False``).
    """
    nodist = getattr(args, "nodist", False)
    if nodist or "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        logger.info("Not using distributed mode")
        setup_for_distributed(is_master=True)
        args.distributed = False
        return
    args.rank = int(os.environ["RANK"])
    args.world_size = int(os.environ["WORLD_SIZE"])
    args.gpu = int(os.environ.get("LOCAL_RANK", 0))
    args.distributed = True
    args.dist_url = getattr(args, "dist_url", None) or "env://"
    if torch.cuda.is_available():
        torch.cuda.set_device(args.gpu)
        args.dist_backend = "nccl"
    else:
        args.dist_backend = "gloo"
    logger.info("| distributed init (rank %d): %s, backend %s, gpu %d", args.rank, args.dist_url,
                args.dist_backend, args.gpu)
    if not dist.is_initialized():
        dist.init_process_group(backend=args.dist_backend, init_method=args.dist_url, world_size=args.world_size,
                                rank=args.rank)
    dist.barrier()
    setup_for_distributed(args.rank == 0)


# ---------------------------------------------------------------------------------------------- mixed precision
def get_grad_norm_(parameters: Iterable[torch.Tensor] | torch.Tensor, norm_type: float = 2.0) -> torch.Tensor:
    """Total ``norm_type``-norm of the gradients of ``parameters`` (those without a gradient are skipped)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    norms = torch.stack([torch.linalg.vector_norm(g, float(norm_type)).to(device) for g in grads])
    return torch.linalg.vector_norm(norms, float(norm_type))


class NativeScalerWithGradNormCount:
    """Backward with a ``torch.amp.GradScaler``, optional gradient clipping, optimizer step; returns the norm.

    Args:
        enabled: scale the loss (fp16 training); when False the scaler is a pass-through.
        device: ``'cuda'`` or ``'cpu'`` (default: CUDA when available).
    """

    state_dict_key = "amp_scaler"

    def __init__(self, enabled: bool = True, device: Optional[str] = None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._scaler = torch.amp.GradScaler(device, enabled=enabled)

    def __call__(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_grad: Optional[float] = None,
                 parameters: Optional[Iterable[torch.Tensor]] = None, create_graph: bool = False,
                 update_grad: bool = True) -> Optional[torch.Tensor]:
        """Backward ``loss``; when ``update_grad``, unscale, clip to ``clip_grad`` (if given), step and return
        the gradient norm before clipping (None when ``update_grad`` is False, e.g. while accumulating)."""
        self._scaler.scale(loss).backward(create_graph=create_graph)
        if not update_grad:
            return None
        if parameters is None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
        parameters = list(parameters)
        self._scaler.unscale_(optimizer)
        if clip_grad is not None:
            norm = torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        else:
            norm = get_grad_norm_(parameters)
        self._scaler.step(optimizer)
        self._scaler.update()
        return norm

    def state_dict(self) -> dict:
        return self._scaler.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._scaler.load_state_dict(state_dict)


# --------------------------------------------------------------------------------------------------- checkpoints
def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` into a fresh temporary file beside ``path``, flush it to disk, then rename it over ``path``:
    a reader (or a run killed during the write) never sees a half-written file. The temporary is removed on
    failure and the previous ``path`` stays intact."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # a unique name that ``write`` creates itself, so the file mode follows the umask (mkstemp would give 0600)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_on_master(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save(obj, f, ...)`` on the main process only; a path is written atomically."""
    if not is_main_process():
        return
    if isinstance(f, (str, os.PathLike)):
        atomic_write(f, lambda tmp: torch.save(obj, tmp, *args, **kwargs))
    else:
        torch.save(obj, f, *args, **kwargs)


def load_checkpoint_safe(path_or_url: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True, map_location='cpu')`` of a file or an ``https`` URL, with
    ``argparse.Namespace`` (the ``args`` of official checkpoints) the one extra class allowed, for this call only.

    Raises:
        pickle.UnpicklingError: the file references code or a class outside the allow-list (nothing executed).
    """
    source = os.fspath(path_or_url)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            if source.startswith("https"):
                return torch.hub.load_state_dict_from_url(source, map_location="cpu", check_hash=True,
                                                          weights_only=True)
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(
            f"refused to load '{source}': it references code or a class outside the allow-list of "
            f"weights_only loading (argparse.Namespace); nothing was executed. Only load checkpoints from sources "
            f"you trust. ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def save_model(args: argparse.Namespace, epoch: int, model_without_ddp: torch.nn.Module,
               optimizer: torch.optim.Optimizer, loss_scaler: NativeScalerWithGradNormCount,
               fname: Optional[str] = None, best_so_far: Optional[float] = None) -> Path:
    """Write ``args.output_dir/checkpoint-{fname or epoch}.pth`` (main process only, atomically) holding
    ``model``, ``optimizer``, ``scaler``, ``args``, ``epoch`` and, when given, ``best_so_far``.

    Returns:
        the checkpoint path.
    """
    path = Path(args.output_dir) / f"checkpoint-{epoch if fname is None else fname}.pth"
    to_save = {
        "model": model_without_ddp.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": loss_scaler.state_dict(),
        "args": args,
        "epoch": epoch,
    }
    if best_so_far is not None:
        to_save["best_so_far"] = best_so_far
    logger.info(">> Saving model to %s ...", path)
    save_on_master(to_save, path)
    return path


def load_model(args: argparse.Namespace, model_without_ddp: torch.nn.Module, optimizer: torch.optim.Optimizer,
               loss_scaler: NativeScalerWithGradNormCount) -> Optional[float]:
    """Resume from ``args.resume`` (a path or ``https`` URL; nothing when None): model (non-strict), optimizer,
    scaler, ``args.start_epoch = epoch + 1`` (0 without resume).

    Returns:
        the checkpoint's ``best_so_far`` (None when absent or not resuming).
    """
    args.start_epoch = 0
    resume = getattr(args, "resume", None)
    if resume is None:
        return None
    checkpoint = load_checkpoint_safe(resume)
    logger.info("Resume checkpoint %s", resume)
    result = model_without_ddp.load_state_dict(checkpoint["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        logger.warning("resume %s: missing keys %s, unexpected keys %s", resume, result.missing_keys,
                       result.unexpected_keys)
    args.start_epoch = checkpoint["epoch"] + 1
    optimizer.load_state_dict(checkpoint["optimizer"])
    if "scaler" in checkpoint:
        loss_scaler.load_state_dict(checkpoint["scaler"])
    best_so_far = checkpoint.get("best_so_far")
    logger.info("With optim & sched! start_epoch=%d%s", args.start_epoch,
                "" if best_so_far is None else f" best_so_far={best_so_far:g}")
    return best_so_far


# ---------------------------------------------------------------------------------------------- parameter groups
_EMBED_NAMES = ("cls_token", "mask_token", "pos_embed", "global_tokens")


def _get_num_layer_for_vit(var_name: str, enc_depth: int, dec_depth: int) -> int:
    """Layer index of a CroCo parameter for layer-wise lr decay: 0 embeddings, 1..enc_depth encoder blocks,
    then decoder blocks, enc_depth + dec_depth + 1 the heads."""
    if var_name in _EMBED_NAMES or var_name.startswith("patch_embed"):
        return 0
    if var_name.startswith("enc_blocks"):
        return int(var_name.split(".")[1]) + 1
    if var_name.startswith(("decoder_embed", "enc_norm")):
        return enc_depth
    if var_name.startswith("dec_blocks"):
        return enc_depth + int(var_name.split(".")[1]) + 1
    if var_name.startswith("dec_norm"):
        return enc_depth + dec_depth
    if var_name.startswith(("head", "prediction_head")):
        return enc_depth + dec_depth + 1
    raise NotImplementedError(var_name)


def get_parameter_groups(model: torch.nn.Module, weight_decay: float, layer_decay: float = 1.0,
                         skip_list: Sequence[str] = (), no_lr_scale_list: Sequence[str] = ()) -> list:
    """Optimizer parameter groups: 1-D parameters (norms, biases), ``*.bias`` and names in ``skip_list`` get no
    weight decay; with ``layer_decay < 1`` each CroCo layer gets ``lr_scale = layer_decay ** (L + 1 - layer)``
    (L = enc_depth + dec_depth), except names in ``no_lr_scale_list``. Frozen parameters are left out.

    Returns:
        list of dicts ``{'weight_decay', 'params', 'lr_scale'}`` for ``torch.optim`` constructors.
    """
    if not (layer_decay == 1.0 or 0.0 < layer_decay < 1.0):
        raise ValueError(f"layer_decay must be 1 or in (0, 1), got {layer_decay}")
    if layer_decay < 1.0:
        enc_depth = model.enc_depth
        dec_depth = model.dec_depth if hasattr(model, "dec_blocks") else 0
        num_layers = enc_depth + dec_depth
        layer_scales = [layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]
    groups: dict = {}
    names: dict = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias") or name in skip_list
        group_name = "no_decay" if no_decay else "decay"
        scale = 1.0
        if layer_decay < 1.0:
            layer_id = _get_num_layer_for_vit(name, enc_depth, dec_depth)
            group_name = f"layer_{layer_id}_{group_name}"
            if name in no_lr_scale_list:
                group_name += "_no_lr_scale"
            else:
                scale = layer_scales[layer_id]
        if group_name not in groups:
            groups[group_name] = {"weight_decay": 0.0 if no_decay else weight_decay, "params": [], "lr_scale": scale}
            names[group_name] = []
        groups[group_name]["params"].append(param)
        names[group_name].append(name)
    logger.info("Param groups = %s", json.dumps(names, indent=2))
    return list(groups.values())


# -------------------------------------------------------------------------------------------------- lr schedule
def cosine_warmup_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: float) -> float:
    """Learning rate at (fractional) ``epoch``: linear warm-up from 0 to ``lr`` over ``warmup_epochs``, then a
    half cosine from ``lr`` down to ``min_lr`` at ``epochs`` (``min_lr`` from there on)."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    span = epochs - warmup_epochs
    progress = 1.0 if span <= 0 else min((epoch - warmup_epochs) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adjust_learning_rate(optimizer: torch.optim.Optimizer, epoch: float, args: argparse.Namespace) -> float:
    """Set each param group's lr to :func:`cosine_warmup_lr` (``args.lr``, ``args.min_lr``,
    ``args.warmup_epochs``, ``args.epochs``) times its ``lr_scale`` (1 when absent); return the base lr."""
    lr = cosine_warmup_lr(epoch, args.lr, args.min_lr, args.warmup_epochs, args.epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
