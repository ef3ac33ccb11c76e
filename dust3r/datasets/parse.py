"""Dataset strings (``--train_dataset`` / ``--test_dataset``) read with :mod:`ast`, never evaluated.

Grammar (anything else is refused with a ValueError naming the offending fragment, before anything is built):

* a reader call ``Name(literal, ..., key=literal, ...)`` with ``Name`` an allowed class; a literal is a str, int
  (``1_000_000``), float, bool, None, ``inf``/``nan``, a tuple / list / dict of literals, or one of the transform
  names ``ColorJitter`` / ``ImgNorm``;
* ``N @ dataset`` (:class:`ResizedDataset`), ``k * dataset`` (:class:`MulDataset`), ``a + b`` (:class:`CatDataset`),
  with parentheses.

:func:`describe_dataset` gives the structure (the calls with their literal arguments); :func:`parse_dataset` builds
it with the classes of a namespace: 'dust3r' (the readers of :mod:`dust3r.datasets`) or any namespace registered
with :func:`register_namespace` (MASt3R's package registers 'mast3r' when imported).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from dust3r.datasets.registry import READER_CLASSES, reader_class
from dust3r.datasets.utils import transforms
from dust3r.utils.checkpoint.constructor import literal_value, source_fragment

__all__ = ["DatasetCall", "Resized", "Multiplied", "Concatenated", "TransformRef", "describe_dataset",
           "parse_dataset", "build_dataset", "register_namespace", "flat_calls", "TRANSFORM_NAMES"]

TRANSFORM_NAMES = ("ColorJitter", "ImgNorm")
_MAX_CHARS = 100_000

_namespaces: Dict[str, Callable[[str], Any]] = {}


def register_namespace(name: str, resolve: Callable[[str], Any]) -> None:
    """Make ``parse_dataset(text, namespace=name)`` resolve class names with ``resolve(name) -> class``
    (AttributeError for an unknown name)."""
    _namespaces[name] = resolve


@dataclass(frozen=True)
class TransformRef:
    """A transform named in a dataset string (``transform=ColorJitter``)."""
    name: str

    def resolve(self):
        return getattr(transforms, self.name)


@dataclass
class DatasetCall:
    """``cls(*args, **kwargs)`` of a dataset string; literal values, transforms as :class:`TransformRef`."""
    cls: str
    args: List[Any] = field(default_factory=list)
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Resized:
    """``size @ dataset``."""
    size: int
    dataset: "Node"


@dataclass
class Multiplied:
    """``factor * dataset``."""
    factor: int
    dataset: "Node"


@dataclass
class Concatenated:
    """``a + b``."""
    left: "Node"
    right: "Node"


Node = Union[DatasetCall, Resized, Multiplied, Concatenated]


class _Reader:
    def __init__(self, text: str, allowed: Optional[frozenset]):
        self.text = text
        self.allowed = allowed

    def fail(self, what: str, node: ast.AST) -> ValueError:
        return ValueError(f"dataset string: {what} {source_fragment(self.text, node)!r} is not allowed; expected "
                          "calls like Name(key=literal) combined with N @ ds, k * ds and ds + ds")

    def node(self, node: ast.AST) -> Node:
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                return Concatenated(self.node(node.left), self.node(node.right))
            if isinstance(node.op, (ast.MatMult, ast.Mult)):
                n = self.count(node.left, "@" if isinstance(node.op, ast.MatMult) else "*")
                inner = self.node(node.right)
                return Resized(n, inner) if isinstance(node.op, ast.MatMult) else Multiplied(n, inner)
            raise self.fail(f"operator {type(node.op).__name__}", node)
        if isinstance(node, ast.Call):
            return self.call(node)
        kind = {ast.Attribute: "attribute access", ast.Lambda: "lambda", ast.ListComp: "comprehension",
                ast.GeneratorExp: "comprehension", ast.SetComp: "comprehension", ast.DictComp: "comprehension",
                ast.Subscript: "subscript", ast.Name: "bare name", ast.Constant: "bare literal"}
        raise self.fail(kind.get(type(node), type(node).__name__), node)

    def count(self, node: ast.AST, op: str) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value > 0:
            return node.value
        raise self.fail(f"left operand of '{op}' (a positive int literal is required)", node)

    def call(self, node: ast.Call) -> DatasetCall:
        if not isinstance(node.func, ast.Name):
            raise self.fail("attribute access" if isinstance(node.func, ast.Attribute) else "callee", node.func)
        name = node.func.id
        if self.allowed is not None and name not in self.allowed:
            raise ValueError(f"dataset string: class {name!r} is not allowed; expected one of "
                             f"{sorted(self.allowed)}")
        call = DatasetCall(name)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail("starred argument", arg)
            call.args.append(self.value(arg, f"{name}(...)"))
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail("keyword unpacking", kw.value)
            if kw.arg in call.kwargs:
                raise ValueError(f"dataset string: keyword argument {kw.arg!r} repeated in {name}(...)")
            call.kwargs[kw.arg] = self.value(kw.value, f"argument {kw.arg!r} of {name}(...)")
        return call

    def value(self, node: ast.AST, where: str) -> Any:
        if isinstance(node, ast.Name) and node.id in TRANSFORM_NAMES:
            return TransformRef(node.id)
        try:
            return literal_value(node, self.text, f"{where} of the dataset string")
        except RecursionError:
            raise ValueError(f"dataset string: {where} is too deeply nested") from None


def describe_dataset(text: str, allowed_classes=None) -> Node:
    """The structure of a dataset string (nothing is imported or built). ValueError for anything outside the
    grammar of the module docstring, naming the fragment; ``allowed_classes`` (names) restricts the calls."""
    if not isinstance(text, str):
        raise ValueError(f"dataset string must be a str, got {type(text).__name__}")
    if len(text) > _MAX_CHARS:
        raise ValueError(f"dataset string is too long ({len(text)} characters)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"dataset string is not valid syntax ({err.msg}): {text!r}") from None
    except (RecursionError, MemoryError):
        raise ValueError("dataset string is too deeply nested") from None
    allowed = None if allowed_classes is None else frozenset(allowed_classes)
    return _Reader(text.strip(), allowed).node(tree.body)


def flat_calls(node: Node) -> List[Tuple[DatasetCall, Optional[int]]]:
    """The reader calls of a structure left to right, each with the size of its enclosing ``N @`` (or None)."""
    if isinstance(node, DatasetCall):
        return [(node, None)]
    if isinstance(node, Concatenated):
        return flat_calls(node.left) + flat_calls(node.right)
    inner = flat_calls(node.dataset)
    if isinstance(node, Resized) and len(inner) == 1 and inner[0][1] is None:
        return [(inner[0][0], node.size)]
    return inner


def _resolve(value: Any) -> Any:
    return value.resolve() if isinstance(value, TransformRef) else value


def build_dataset(node: Node, resolve: Callable[[str], Any]):
    """Instantiate a structure, class names looked up with ``resolve``."""
    if isinstance(node, DatasetCall):
        cls = resolve(node.cls)
        return cls(*[_resolve(a) for a in node.args], **{k: _resolve(v) for k, v in node.kwargs.items()})
    if isinstance(node, Concatenated):
        return build_dataset(node.left, resolve) + build_dataset(node.right, resolve)
    if isinstance(node, Resized):
        return node.size @ build_dataset(node.dataset, resolve)
    return node.factor * build_dataset(node.dataset, resolve)


def _namespace_resolver(namespace: str) -> Callable[[str], Any]:
    if namespace == "dust3r":
        return reader_class
    if namespace not in _namespaces:
        raise ValueError(f"unknown dataset namespace {namespace!r}: 'dust3r' or one registered with "
                         f"register_namespace (known: {sorted(_namespaces)}); the MASt3R one is registered when "
                         "its datasets package is imported")
    return _namespaces[namespace]


def parse_dataset(text: str, namespace: str = "dust3r", classes: Optional[Mapping[str, Any]] = None):
    """Build the dataset a string describes, e.g. ``"1000 @ Co3d(split='train', resolution=(512, 384))"``.

    Args:
        text: the dataset string (see the module docstring for what is allowed).
        namespace: where class names are looked up: 'dust3r' or a registered namespace ('mast3r').
        classes: extra / overriding ``name -> class`` entries (stand-ins in tests, custom readers).

    Raises:
        ValueError: the string leaves the allowed grammar or names an unknown class (nothing is built then).
    """
    extra = dict(classes or {})
    structure = describe_dataset(text, allowed_classes=set(READER_CLASSES) | set(extra))
    base = _namespace_resolver(namespace)

    def resolve(name: str):
        return extra[name] if name in extra else base(name)
    return build_dataset(structure, resolve)
