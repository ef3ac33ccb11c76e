"""Constructor strings (``ckpt['args'].model``) read with :mod:`ast` and written back, never evaluated.

``"AsymmetricMASt3R(pos_embed='RoPE100', img_size=(512, 512), depth_mode=('exp', -inf, inf))"`` parses to
``('AsymmetricMASt3R', {...})`` when the class name is allow-listed and every argument is a literal.
:func:`literal_value` and :func:`source_fragment` are the building blocks the other string parsers (datasets,
visual-localization datasets) share.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Mapping
from typing import Any

_MAX_CONSTRUCTOR_CHARS = 20_000
_NAMED_FLOATS = {"inf": math.inf, "nan": math.nan}


def source_fragment(text: str, node: ast.AST) -> str:
    seg = ast.get_source_segment(text, node)
    if seg is None:
        try:
            seg = ast.unparse(node)
        except Exception:  # pragma: no cover - unparse handles every parsed node
            seg = type(node).__name__
    return seg if len(seg) <= 200 else seg[:197] + "..."


def literal_value(node: ast.AST, text: str, where: str) -> Any:
    """Value of a literal expression node; ValueError naming the fragment for anything else."""
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise ValueError(f"unsupported constant {source_fragment(text, node)!s} in {where} "
                         "(only str, int, float, bool and None literals are allowed)")
    if isinstance(node, ast.Name):
        if node.id in _NAMED_FLOATS:
            return _NAMED_FLOATS[node.id]
        raise ValueError(f"unsupported name {node.id!r} in {where}: only the names inf and nan are allowed "
                         "besides literals")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = literal_value(node.operand, text, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"unsupported expression {source_fragment(text, node)} in {where}: "
                             "unary +/- only applies to numbers, inf and nan")
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                raise ValueError(f"unsupported starred expression {source_fragment(text, elt)} in {where}")
            items.append(literal_value(elt, text, where))
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        out = {}
        for key_node, value_node in zip(node.keys, node.values):
            if key_node is None:
                raise ValueError(f"unsupported dict unpacking **{source_fragment(text, value_node)} in {where}")
            key = literal_value(key_node, text, where)
            if isinstance(key, list):
                raise ValueError(f"unhashable dict key {source_fragment(text, key_node)} in {where}")
            out[key] = literal_value(value_node, text, where)
        return out
    kind = {ast.Call: "call", ast.Attribute: "attribute access", ast.Subscript: "subscript",
            ast.Lambda: "lambda", ast.JoinedStr: "f-string", ast.BinOp: "operator", ast.BoolOp: "operator",
            ast.Compare: "comparison", ast.Set: "set", ast.IfExp: "conditional expression",
            ast.NamedExpr: "assignment expression"}.get(type(node), "expression")
    raise ValueError(f"unsupported {kind} {source_fragment(text, node)} in {where}: only literals "
                     "(str, int, float, bool, None, inf, nan, tuples, lists, dicts) are allowed")


def parse_constructor(text: str, allowed_classes: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """Parse a constructor string such as ``ckpt['args'].model`` without evaluating it.

    Args:
        text: e.g. ``"AsymmetricMASt3R(pos_embed='RoPE100', img_size=(512, 512), depth_mode=('exp', -inf, inf))"``.
        allowed_classes: class names the call may name.

    Returns:
        ``(class_name, kwargs)``; kwargs in the order written, tuples kept as tuples, ``inf``/``nan`` as floats.

    Raises:
        ValueError: not a single call of an allowed bare class name with literal keyword arguments; the message
            quotes the offending fragment.
    """
    allowed = frozenset(allowed_classes)
    if not isinstance(text, str):
        raise ValueError(f"constructor must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise ValueError("constructor string is empty")
    if len(text) > _MAX_CONSTRUCTOR_CHARS:
        raise ValueError(f"constructor string is too long ({len(text)} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"constructor string is not valid Python syntax ({e.msg}): {text!r}") from None
    except (RecursionError, MemoryError):
        raise ValueError("constructor string is too deeply nested") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise ValueError("constructor must be a call like ClassName(key=value, ...), got: "
                         f"{source_fragment(text, call)}")
    if not isinstance(call.func, ast.Name):
        raise ValueError("constructor must call a bare class name, got the callee "
                         f"{source_fragment(text, call.func)} in {source_fragment(text, call)}")
    name = call.func.id
    if name not in allowed:
        raise ValueError(f"class '{name}' is not allowed in a constructor string; expected one of {sorted(allowed)}")
    if call.args:
        raise ValueError(f"positional arguments are not allowed in a constructor string (use key=value): "
                         f"{', '.join(source_fragment(text, a) for a in call.args)} in {name}(...)")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"keyword unpacking **{source_fragment(text, kw.value)} is not allowed in {name}(...)")
        if kw.arg in kwargs:
            raise ValueError(f"keyword argument {kw.arg!r} repeated in {name}(...)")
        try:
            kwargs[kw.arg] = literal_value(kw.value, text, f"argument {kw.arg!r}")
        except RecursionError:
            raise ValueError(f"argument {kw.arg!r} is too deeply nested") from None
    return name, kwargs


def _format_literal(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(_format_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_format_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_format_literal(k)}: {_format_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} value {value!r} into a constructor string")


def format_constructor(cls_name: str, kwargs: Mapping[str, Any]) -> str:
    """Inverse of :func:`parse_constructor`: ``ClassName(key=value, ...)`` with ``inf`` written as ``inf``.

    ``format_constructor(*parse_constructor(s, ...)) == s`` for the official strings.
    """
    if not isinstance(cls_name, str) or not cls_name.isidentifier():
        raise ValueError(f"invalid class name {cls_name!r}")
    parts = []
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"invalid keyword argument name {key!r}")
        parts.append(f"{key}={_format_literal(value)}")
    return f"{cls_name}({', '.join(parts)})"
