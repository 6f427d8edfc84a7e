"""Named read-only views of a result: ``result.sts`` is ``result.atom("sts")``.

A result that holds several quantities in one tensor (the 16 PhiID atoms, the flow
metrics) offers a method that picks one by name, and attributes for the few that users
reach for most. :class:`KeyedView` writes such an attribute once, from the method and the
key, instead of a property per name::

    class PhiIDResult:
        def atom(self, name: str) -> Tensor: ...
        sts = KeyedView("atom", "sts", "Persistent synergy (synergy -> synergy).")
"""

from __future__ import annotations

from typing import Any, overload

from torch import Tensor

__all__ = ["KeyedView"]


class KeyedView:
    """A read-only attribute whose value is ``getattr(obj, method)(key)``, computed on access."""

    def __init__(self, method: str, key: str, doc: str | None = None) -> None:
        self.method, self.key = method, key
        self.__doc__ = doc or f"``{method}({key!r})``."

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> KeyedView: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Tensor: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self.method)(self.key)

    def __set__(self, obj: object, value: Any) -> None:
        raise AttributeError(f"{self.name} is read-only: it is {self.method}({self.key!r})")

    def __repr__(self) -> str:
        return f"KeyedView({self.method!r}, {self.key!r})"
