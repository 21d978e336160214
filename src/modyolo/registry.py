"""Name -> object registries.

YAML files are untrusted input, so every name a YAML file may use (a module in a layer row, an
activation) resolves through a registry rather than ``eval``. A registry refuses duplicate names
(two blocks silently shadowing each other is how experiments go wrong) and answers an unknown
name with the nearest registered names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """A name that is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class Registry:
    """A named table of objects, e.g. the layer blocks a model YAML may name.

    >>> BLOCKS = Registry("block")
    >>> @BLOCKS.register("Conv")
    ... class Conv: ...
    >>> BLOCKS.get("Conv") is Conv
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._canonical: dict[str, str] = {}  # alias or name -> the name it was registered under

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: register the object under ``name`` (default: its ``__name__``) and aliases."""

        def add(obj: T) -> T:
            main = name or obj.__name__  # type: ignore[attr-defined]
            for key in (main, *aliases):
                if key in self._items:
                    raise RegistryError(
                        f"{self.kind} name {key!r} is already registered "
                        f"(by {self._describe(self._items[key])}); pick another name"
                    )
            for key in (main, *aliases):
                self._items[key] = obj
                self._canonical[key] = main
            return obj

        return add

    def add(self, name: str, obj: Any, *, aliases: tuple[str, ...] = ()) -> Any:
        """Register ``obj`` without the decorator form (for classes defined elsewhere)."""
        return self.register(name, aliases=aliases)(obj)

    def get(self, name: str) -> Any:
        """The object registered as ``name``; an unknown name raises with the near names."""
        if not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a string, got {type(name).__name__} {name!r}")
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        near = self.suggest(name)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        return f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(self.names())})"

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Registered names closest to ``name``, case-insensitively."""
        lowered = {k.lower(): k for k in self._items}
        hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
        return [lowered[h] for h in hits]

    def canonical(self, name: str) -> str:
        """The main name of an alias (``nn.Upsample`` -> ``Upsample``)."""
        self.get(name)
        return self._canonical[name]

    def names(self) -> list[str]:
        """Main names (aliases left out), sorted."""
        return sorted(set(self._canonical.values()))

    def items(self) -> Iterator[tuple[str, Any]]:
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self.names())

    @staticmethod
    def _describe(obj: Any) -> str:
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
