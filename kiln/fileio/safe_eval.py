"""A restricted evaluator for the expressions Detectron2 configs write under ``!!python/object/apply:eval``.

Detectron2's ``Base-RetinaNet.yaml`` spells its anchor sizes as a Python list comprehension and loads
the file with an unsafe yaml loader to evaluate it. kiln evaluates that one tag's text itself: the
expression is parsed with :mod:`ast` and walked by a small interpreter that knows literals,
arithmetic, comparisons, ``and``/``or``/``not``/``x if c else y``, list/tuple/set/dict displays and
comprehensions. The only names are the comprehensions' loop variables; attributes, calls, subscripts,
lambdas and everything else are refused, so evaluating a config can never run code. Sizes are bounded
(exponents, repeated sequences) so a file cannot exhaust memory either.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Iterator
from typing import Any

__all__ = ["safe_eval", "UnsafeExpressionError"]

_MAX_EXPONENT = 1024
_MAX_ITEMS = 1_000_000

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class UnsafeExpressionError(ValueError):
    """The expression uses something outside the allowed subset (or is too large)."""


def _describe(node: ast.AST) -> str:
    return {
        ast.Call: "a function call",
        ast.Attribute: "an attribute",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.GeneratorExp: "a generator expression",
        ast.Starred: "a starred expression",
        ast.NamedExpr: "an assignment expression",
    }.get(type(node), type(node).__name__)


class _Interpreter:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    def eval(self, node: ast.AST) -> Any:  # noqa: C901 - one branch per node type, flat on purpose
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool)) or node.value is None:
                return node.value
            raise UnsafeExpressionError(f"constant {node.value!r} is not a number, string, bool or None")
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
            raise UnsafeExpressionError(
                f"name {node.id!r} is not a comprehension loop variable; only loop variables may be named"
            )
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.eval(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self._binop(node)
        if isinstance(node, ast.BoolOp):
            value: Any = None
            for part in node.values:
                value = self.eval(part)
                if isinstance(node.op, ast.And) and not value or isinstance(node.op, ast.Or) and value:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, comp in zip(node.ops, node.comparators):
                if type(op) not in _COMPARE:
                    raise UnsafeExpressionError(f"comparison {type(op).__name__} is not allowed")
                right = self.eval(comp)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.eval(e) for e in node.elts]
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise UnsafeExpressionError("dict unpacking (**) is not allowed")
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, (ast.ListComp, ast.SetComp)):
            out = [self.eval(node.elt) for _ in self._loops(node.generators, 0)]
            return out if isinstance(node, ast.ListComp) else set(out)
        if isinstance(node, ast.DictComp):
            return {self.eval(node.key): self.eval(node.value) for _ in self._loops(node.generators, 0)}
        raise UnsafeExpressionError(f"{_describe(node)} is not allowed")

    def _binop(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise UnsafeExpressionError(f"exponent {right!r} is larger than {_MAX_EXPONENT}")
        if isinstance(node.op, ast.Mult):
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_ITEMS:
                    raise UnsafeExpressionError(f"a sequence repeated to more than {_MAX_ITEMS} items")
        try:
            return _BINOPS[type(node.op)](left, right)
        except (TypeError, ZeroDivisionError, OverflowError) as exc:
            raise UnsafeExpressionError(f"{type(exc).__name__}: {exc}") from None

    def _loops(self, generators: list[ast.comprehension], i: int) -> Iterator[None]:
        if i == len(generators):
            yield None
            return
        gen = generators[i]
        if gen.is_async:
            raise UnsafeExpressionError("async comprehensions are not allowed")
        iterable = self.eval(gen.iter)
        if not isinstance(iterable, (list, tuple, set, dict, str)):
            raise UnsafeExpressionError(
                f"a comprehension can only loop over a literal list, tuple, set, "
                f"dict or string, got {type(iterable).__name__}"
            )
        for item in list(iterable):
            scope: dict[str, Any] = {}
            _bind(gen.target, item, scope)
            self.scopes.append(scope)
            try:
                if all(self.eval(cond) for cond in gen.ifs):
                    yield from self._loops(generators, i + 1)
            finally:
                self.scopes.pop()


def _bind(target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = value
        return
    if isinstance(target, (ast.Tuple, ast.List)):
        values = list(value)
        if len(values) != len(target.elts):
            raise UnsafeExpressionError(f"cannot unpack {len(values)} values into {len(target.elts)} names")
        for t, v in zip(target.elts, values):
            _bind(t, v, scope)
        return
    raise UnsafeExpressionError(f"loop target {_describe(target)} is not allowed; use names")


def safe_eval(text: str) -> Any:
    """Evaluate ``text``, a Python expression restricted to literals, arithmetic and comprehensions.

    Raises :class:`UnsafeExpressionError` naming what is not allowed (or ``SyntaxError`` details).

    Example::

        >>> safe_eval("[[x, x * 2**(1.0/3)] for x in [32, 64]]")[1][0]
        64
    """
    if not isinstance(text, str):
        raise UnsafeExpressionError(f"expected the expression as a string, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"not a Python expression: {exc.msg}") from None
    return _Interpreter().eval(tree)
