"""Runtime shape checks for the test suite: the typechecker behind ``--jaxtyping-packages``.

pyproject.toml runs the tests with ``--jaxtyping-packages=synergy_lens,tests.shapecheck.shapes``
(jaxtyping's pytest plugin, as TransformerLens does with ``beartype.beartype``): every function
and dataclass of synergy_lens is wrapped in ``jaxtyping.jaxtyped(typechecker=shapes)``, so each
call checks the dtype and the dimensions of its jaxtyping-annotated arguments and return value
(``Float[Tensor, "prompt unit time"]``), with names bound consistently across them.

Why not beartype itself: it checks every annotation, and a wrong ``Literal`` or a string
where a tensor belongs then fails inside beartype before the library's own argument checks,
whose messages (naming the problem and the fix) the tests assert. :func:`shapes` checks only
the jaxtyping array annotations -- the shapes -- and leaves everything else to the library.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jaxtyping import AbstractArray, TypeCheckError

__all__ = ["off", "shapes"]

_ENABLED = contextvars.ContextVar("synergy_lens_shape_checks", default=True)


@contextlib.contextmanager
def off() -> Iterator[None]:
    """No shape checks inside the block: for tests that feed wrong arrays on purpose, to see
    the library's own error (tests marked ``wrong_shapes``; tests/conftest.py)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _is_array(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, AbstractArray)


def _mentions_array(hint: Any) -> bool:
    if _is_array(hint):
        return True
    return any(_mentions_array(arg) for arg in typing.get_args(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint`` as far as array shapes go (other hints always fit)."""
    if _is_array(hint):
        return isinstance(value, hint)  # dtype and shape, dims bound in jaxtyped's memo
    if not _mentions_array(hint):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args if arg is not type(None)) or (
            value is None and type(None) in args
        )
    if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[A, B]: one hint per item
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_matches, value, args))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Sequence) and args:
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        return all(_matches(item, args[0]) for item in value)
    return True  # dicts and other containers of arrays: not checked


def shapes(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Check the jaxtyping-annotated parameters and return value of ``fn`` on every call."""
    signature = inspect.signature(fn)
    checked = {
        name: p.annotation
        for name, p in signature.parameters.items()
        if not isinstance(p.annotation, str) and _mentions_array(p.annotation)
    }
    out = signature.return_annotation
    check_out = not isinstance(out, str) and _mentions_array(out)
    if not checked and not check_out:
        return fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _ENABLED.get():
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        for name, hint in checked.items():
            if name in bound.arguments and not _matches(bound.arguments[name], hint):
                value = bound.arguments[name]
                got = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
                raise TypeCheckError(f"parameter {name!r}: {got} does not fit {hint}")
        result = fn(*args, **kwargs)
        if check_out and not _matches(result, out):
            got = tuple(result.shape) if hasattr(result, "shape") else type(result).__name__
            raise TypeCheckError(f"return value: {got} does not fit {out}")
        return result

    return wrapper
