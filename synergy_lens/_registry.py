"""One registry type behind every pluggable choice (scores, energies, signals, ablation modes,
redundancy functions, task families).

A :class:`Registry` is a ``dict`` from name to entry (so ``name in REG``, ``sorted(REG)``,
``del REG[name]`` work as before) with one way to add entries, usable directly or as a
decorator, and one error for a name that is not there, which lists the names that are (in registration
order):

>>> COLOURS = Registry("colour", hint="add one with COLOURS.register(name, value)")
>>> COLOURS.register("red", "#ff0000")
'#ff0000'
>>> @COLOURS.register("shout")
... def _shout(text):
...     return text.upper()
>>> COLOURS["blue"]
Traceback (most recent call last):
...
synergy_lens._registry.UnknownName: unknown colour 'blue'; registered: red, shout (add one with COLOURS.register(name, value))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")
E = TypeVar("E")


class UnknownName(KeyError, ValueError):
    """A name that is not registered (a ``KeyError`` for mappings, a ``ValueError`` for callers
    that validate arguments)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(dict[str, T]):
    """Name -> entry, with :meth:`register` and a clear error on an unknown name.

    Args:
        kind: what an entry is, for messages (``"score"``, ``"ablation mode"``).
        hint: how to add one, appended to the unknown-name message.
        entries: the built-in entries.
    """

    def __init__(self, kind: str, *, hint: str = "", entries: Iterable[tuple[str, T]] = ()) -> None:
        super().__init__(entries)
        self.kind = kind
        self.hint = hint

    @overload
    def register(self, name: str, entry: None = None, *, overwrite: bool = False) -> Callable[[E], E]: ...

    @overload
    def register(self, name: str, entry: E, *, overwrite: bool = False) -> E: ...

    def register(self, name: str, entry: Any = None, *, overwrite: bool = False) -> Any:
        """Add ``entry`` under ``name`` and return it; without ``entry``, a decorator that does.

        Raises:
            ValueError: ``name`` is not a non-empty string, or is taken and ``overwrite`` is
                false.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(value: E) -> E:
            if name in self and not overwrite:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (an entry of that name exists); "
                    "pass overwrite=True to replace it"
                )
            self[name] = value  # type: ignore[assignment]
            return value

        return add if entry is None else add(entry)

    def unknown(self, name: object) -> UnknownName:
        """The error for a name that is not registered (raise it)."""
        hint = f" ({self.hint})" if self.hint else ""
        return UnknownName(f"unknown {self.kind} {name!r}; registered: {', '.join(self)}{hint}")

    def __missing__(self, name: str) -> T:
        raise self.unknown(name)
