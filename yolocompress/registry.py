"""``Registry``: the named choices at one variation point (channel strategies, importances, ...).

Every place that offers the choices - the CLI's ``choices=``, ``--help``, the sweep, the demo's stage
list, the notebooks - reads them from the registry, so registering one more strategy is one call
and an unknown name fails the same way everywhere: with the list of names that would work.

    STRATEGIES = Registry("channel strategy", error=PlanError)
    STRATEGIES.register(Union())            # the item's ``name`` is its key
    STRATEGIES["union"]                     # -> the item; STRATEGIES["unoin"] raises PlanError
    STRATEGIES.names()                      # ('conservative', 'shared', 'union'), registration order
"""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Items keyed by their ``name`` attribute, in registration order; iterates names like a dict."""

    def __init__(self, what: str, error: type[Exception] = ValueError):
        self.what = what                  # what one item is, for messages ("channel strategy")
        self.error = error                # raised for an unknown or duplicate name
        self._items: dict[str, T] = {}

    def register(self, item: T) -> T:
        """Add ``item`` under ``item.name``; returns it (so it can decorate a class's instance)."""
        name = item.name
        if name in self._items:
            raise self.error(f"{self.what} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy item clean up with this)."""
        self[name]
        del self._items[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.what} {name!r}: expected one of {', '.join(self._items)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        """The names, like a dict's keys (so ``for s in STRATEGIES`` reads as a tuple of names did)."""
        return iter(tuple(self._items))

    def values(self) -> tuple[T, ...]:
        return tuple(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._items)})"
