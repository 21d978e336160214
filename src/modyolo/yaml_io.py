"""Reading user YAML files: always a safe loader, within a budget, and every error names the file.

A YAML file is untrusted input. ``yaml.safe_load`` runs no code, but it happily builds a
"billion laughs" document (nine lines of ``b: &b [*a, *a, ...]``) whose *expanded* size is
10^9 items: the loader itself returns shared lists quickly, and whatever walks the result later
(building a model, ``json.dumps`` of a run's args, saving a checkpoint) then hangs while memory
grows without bound. So every document is composed first and measured before anything is
constructed:

- ``MAX_BYTES``: the file's size (a model or data YAML is a few KB);
- ``MAX_DEPTH``: nesting depth (``[[[[...]]]]`` would otherwise end in a RecursionError);
- ``MAX_NODES``: scalars/sequences/mappings as written;
- ``MAX_EXPANDED``: nodes after every alias is expanded (the billion-laughs measure).

Over a limit raises :class:`YamlLimitError` (a ValueError) naming the file, the limit and the
measured value; ``MODYOLO_YAML_MAX_EXPANDED`` raises the expanded-size limit for a file that
legitimately needs more (none of the shipped ones come near it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000
MAX_EXPANDED = 1_000_000


class YamlLimitError(ValueError):
    """A YAML document over the size / depth / alias-expansion budget (the message names the file)."""


def _max_expanded() -> int:
    raw = os.environ.get("MODYOLO_YAML_MAX_EXPANDED", "")
    try:
        return max(int(raw), 1) if raw else MAX_EXPANDED
    except ValueError:
        raise ValueError(
            f"MODYOLO_YAML_MAX_EXPANDED={raw!r} is not an integer; unset it or give e.g. 5000000"
        ) from None


class _BudgetLoader(yaml.SafeLoader):
    """SafeLoader that counts composed nodes and nesting depth while composing."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source, self.depth, self.nodes = source, 0, 0

    def compose_node(self, parent, index):  # PyYAML's signature
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlLimitError(
                f"{self.source}: YAML nested deeper than {MAX_DEPTH} levels; a model, data or hyp "
                "file needs a handful. Flatten the file."
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise YamlLimitError(f"{self.source}: YAML has more than {MAX_NODES} nodes; refusing to read it")
        return node


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Number of nodes once every alias is expanded (aliases share node objects: memoised, so linear)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias (``&a [*a]``) counts once here; the constructor builds it as a cycle
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = total
    return total


def loads_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text within the budget; ``source`` names it in every error.

    Raises ValueError (:class:`YamlLimitError` for an over-budget document) naming ``source``.
    """
    if len(text) > MAX_BYTES:
        raise YamlLimitError(
            f"{source}: {len(text)} characters is over the {MAX_BYTES}-character limit for a YAML "
            "file; is this really a model/data/hyp YAML?"
        )
    try:
        loader = _BudgetLoader(text, source)  # the reader checks characters already here
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML ({e})") from e
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        limit = _max_expanded()
        size = _expanded_size(node, {})
        if size > limit:
            raise YamlLimitError(
                f"{source}: YAML expands to {size:,} nodes through its aliases (*name), over the limit of "
                f"{limit:,} (an alias bomb?). Remove the anchors/aliases, or raise MODYOLO_YAML_MAX_EXPANDED "
                "if the file is genuine."
            )
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ValueError(f"{source}: not valid YAML ({e})") from e
    except RecursionError:
        raise YamlLimitError(f"{source}: YAML nested too deeply to read") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """The parsed file within the budget; errors are ValueErrors naming the file (and the line for syntax)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if size > MAX_BYTES:
        raise YamlLimitError(
            f"{path}: {size} bytes is over the {MAX_BYTES}-byte limit for a YAML file; "
            "is this really a model/data/hyp YAML?"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a BOM written by Windows editors is not content
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, expected a YAML file") from None
    return loads_yaml(text, str(path))
