"""What the training command line names, built without evaluating any string: the model (a registered class with
literal keyword arguments), the criteria (the losses' ``parse_criterion``), the data loaders
(``dust3r.datasets.parse_dataset`` + ``get_data_loader``) and the ``--pretrained`` weights."""
from __future__ import annotations

import ast
import logging
from typing import Callable, Dict, List, Tuple

import torch

from croco.utils.misc import load_checkpoint_safe

from ..model_loading import accepted_kwargs, get_model_class, known_model_names
from ..utils.checkpoint import parse_constructor

logger = logging.getLogger(__name__)


def build_model(text: str, device="cpu") -> torch.nn.Module:
    """The model of a ``--model`` string such as ``"AsymmetricMASt3R(pos_embed='RoPE100', img_size=(512, 512))"``.

    The string is read with :mod:`ast` (a registered model class, literal keyword arguments, ``inf``); nothing in
    it is executed. ``device='meta'`` builds the architecture without allocating or initialising weights.

    Raises:
        ValueError: the string is not such a call, or names an unknown class or argument.
    """
    name, kwargs = parse_constructor(text, known_model_names())
    cls = get_model_class(name)
    unknown = sorted(set(kwargs) - accepted_kwargs(cls))
    if unknown:
        raise ValueError(f"--model {name}(...): unknown argument(s) {unknown}")
    with torch.device(device):
        return cls(**kwargs)


def load_pretrained_weights(model: torch.nn.Module, path: str) -> Tuple[List[str], List[str]]:
    """Load the ``model`` state dict of the checkpoint ``path`` into ``model``, non-strictly (a DUSt3R checkpoint
    into MASt3R leaves the descriptor heads at their initialisation), and log exactly which keys were left out.

    Returns:
        (missing keys: parameters of ``model`` the checkpoint does not hold, unexpected keys: checkpoint entries
        ``model`` has no place for).
    """
    ckpt = load_checkpoint_safe(path)
    state_dict = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    logger.info("Loaded pretrained weights from %s: %d tensors, %d missing keys (not loaded, left at their "
                "initialisation), %d unexpected keys (ignored)", path, len(state_dict) - len(unexpected),
                len(missing), len(unexpected))
    if missing:
        logger.info("pretrained %s: missing keys: %s", path, ", ".join(missing))
    if unexpected:
        logger.info("pretrained %s: unexpected keys: %s", path, ", ".join(unexpected))
    return missing, unexpected


def split_dataset_sum(text: str) -> List[str]:
    """The top-level ``+`` terms of a dataset string (``"100 @ A(x=1) + B(y='a+b')"`` -> two terms), read with
    :mod:`ast` so a ``+`` inside an argument does not split."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"dataset string is not valid Python syntax ({e.msg}): {text!r}") from None
    terms: List[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            visit(node.left)
            visit(node.right)
        else:
            terms.append(node)

    visit(tree.body)
    return [ast.get_source_segment(text.strip(), node) for node in terms]


def test_set_name(term: str) -> str:
    """Name under which a test set is logged: the text before its first parenthesis (``'100 @ Co3d'``)."""
    return term.split("(")[0].strip()


def build_dataset(dataset, batch_size: int, num_workers: int, test: bool = False, namespace: str = "dust3r",
                  pin_mem: bool = None):
    """Data loader of a dataset string (or dataset object): shuffled, aspect-ratio-batched and drop-last for
    training, sequential for test; split over the ranks when distributed.

    Args:
        dataset: e.g. ``"1000 @ Co3d(split='train', ROOT='data/co3d_subset_processed', ...)"``.
        namespace: ``'dust3r'`` or ``'mast3r'`` (the dataset classes the names resolve to).
        pin_mem: pin host memory (default: when CUDA is available).
    """
    # imported here: the dataset readers (and their optional dependencies) load only when a loader is built
    from ..datasets import get_data_loader, parse_dataset

    split = "Test" if test else "Train"
    logger.info("Building %s data loader for dataset: %s", split, dataset)
    if isinstance(dataset, str):
        dataset = parse_dataset(dataset, namespace=namespace)
    loader = get_data_loader(dataset, batch_size=batch_size, num_workers=num_workers,
                             pin_mem=torch.cuda.is_available() if pin_mem is None else pin_mem,
                             shuffle=not test, drop_last=not test)
    logger.info("%s dataset length: %d", split, len(loader))
    return loader


def build_test_loaders(text: str, batch_size: int, num_workers: int, namespace: str = "dust3r") -> Dict[str, object]:
    """One loader per ``+`` term of ``--test_dataset``, keyed by :func:`test_set_name` (empty text: none)."""
    if not text or not text.strip() or text.strip() == "[None]":
        return {}
    return {test_set_name(term): build_dataset(term, batch_size, num_workers, test=True, namespace=namespace)
            for term in split_dataset_sum(text)}


def build_criteria(args, parse_criterion: Callable, device) -> Tuple[Callable, Callable]:
    """(train criterion, test criterion) of ``args`` (the test one defaults to the train one)."""
    logger.info(">> Creating train criterion = %s", args.train_criterion)
    train_criterion = parse_criterion(args.train_criterion)
    test_text = args.test_criterion or args.train_criterion
    logger.info(">> Creating test criterion = %s", test_text)
    test_criterion = parse_criterion(test_text)
    return _to(train_criterion, device), _to(test_criterion, device)


def _to(criterion, device):
    return criterion.to(device) if hasattr(criterion, "to") else criterion


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with the original's settings (betas (0.9, 0.95); no weight decay on biases and 1-D parameters, via
    ``croco.utils.misc.get_parameter_groups``), as one fused kernel where torch has it for the parameters' device
    (CPU and CUDA): the same update as the original's per-tensor loop, several times faster on a ViT-L (about 0.3 s
    instead of 2 s per step on 2 CPU cores). Optimizer states load either way (``fused`` is a group option)."""
    from croco.utils import misc
    groups = misc.get_parameter_groups(model, weight_decay)
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = devices <= {"cpu", "cuda"} and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                                               for g in groups for p in g["params"])
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused or None)
    except (RuntimeError, TypeError):  # a torch build without the fused kernel for this device
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))

