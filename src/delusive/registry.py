"""Name → factory registries (models, objectives, attacks) with clear errors for unknown names."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping of names to factories; ``kind`` names the option in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(f"{self.kind}: unknown name {name!r}; expected one of {', '.join(self)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return list(self)


def hyperparameters(cls: type, skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    """A component's hyperparameters: the named keyword parameters of its ``__init__`` and their defaults
    (the documented values); attacks and objectives both declare theirs this way."""
    if cls.__init__ is object.__init__:
        return {}
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if k not in skip and p.kind is p.POSITIONAL_OR_KEYWORD}


def check_params(kind: str, name: str, cls: type, params: dict[str, Any], skip: tuple[str, ...] = ("self",)) -> None:
    """Raise ``ValueError`` naming unknown params of component ``name`` and the allowed ones."""
    allowed = list(hyperparameters(cls, skip))
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{kind} {name!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed) or 'none'}")
