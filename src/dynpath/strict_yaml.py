"""Strict YAML for the params files: ``yaml.safe_load`` with a duplicate key refused (naming the
key and both lines) and alias expansion bounded (an alias bomb refused in milliseconds, not a hang).

Its own module, below :mod:`dynpath.config` (which reads params.yaml through it): the YAML rules are
one concern, the schema of the params another.
"""

from __future__ import annotations

from typing import Any

import yaml

#: The most YAML nodes a params file may expand to once its aliases are followed. A real
#: params.yaml has a few hundred; an "alias bomb" (each anchor a list of aliases of the previous
#: one) has few nodes in the file but billions once expanded, and hangs whatever walks it.
MAX_YAML_NODES = 100_000


class YAMLRefused(yaml.YAMLError):
    """YAML that parses but is refused: a duplicate key, an alias bomb (the message names the
    key or the line)."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, plus: a duplicate key is an error naming the key and both lines (YAML
    keeps the last value silently), and a document whose aliases expand to more than
    :data:`MAX_YAML_NODES` nodes is refused before it is built (bounded, not a hang)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise YAMLRefused(
                        f"line {line}: duplicate key {key!r} (first on line {seen[key]}); "
                        "YAML would silently keep the last value: remove one of them"
                    )
                seen[key] = line
            except TypeError:  # an unhashable key: the base constructor says so
                break
        return super().construct_mapping(node, deep=deep)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose tree, aliases followed, has more than MAX_YAML_NODES nodes,
    or that contains itself (a recursive alias).

    Sizes are memoised per node (an alias is the same node object as its anchor), so this is
    linear in the file, however large the expansion."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            if id(node) in open_nodes:
                line = node.start_mark.line + 1
                raise YAMLRefused(f"line {line}: a recursive alias (a value containing itself)")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        open_nodes.discard(id(node))
        size = 1 + sum(sizes.get(id(c), 1) for c in children)
        if size > MAX_YAML_NODES:
            line = node.start_mark.line + 1
            raise YAMLRefused(
                f"line {line}: its aliases expand to more than {MAX_YAML_NODES} values "
                "(an alias bomb?); write the values out"
            )
        sizes[id(node)] = size


def strict_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused and alias expansion bounded
    (:class:`_StrictLoader`); raises ``yaml.YAMLError`` like it."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
