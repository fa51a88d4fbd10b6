"""Native YAML records: one record per file, or a list of records."""

from __future__ import annotations

from typing import Any

import yaml

from generator.errors import Problem, ReaderError
from generator.model import Record, SourceRef
from generator.readers.common import ReadResult

MAX_ALIASES = 200  # a few anchors are fine; thousands are an alias bomb ("billion laughs")
MAX_DEPTH = 50
MAX_EXPANDED_NODES = 200_000  # what the document would be with every alias written out


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key and refuses alias bombs."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.alias_count = 0
        self.depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases; records do not need that many")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_timestamp_or_text(loader: _LineLoader, node: yaml.ScalarNode):
    """Keep an impossible date such as 2025-13-40 as text, so the field check can name it."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp_or_text)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Count the values a node stands for with aliases expanded (memoised: aliases share node objects)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # guards against recursive anchors
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def _compose(text: str) -> yaml.Node | None:
    """Parse YAML into nodes, with libyaml when PyYAML has it (about 12 times faster), else in Python."""
    if CFastLoader is not None:
        loader = CFastLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    loader = _LineLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _ShapeError(yaml.YAMLError):
    """A document too deep or too alias-heavy to build; `line` is 0-based, like YAML marks."""

    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.line = node.start_mark.line if node.start_mark is not None else None


def _check_shape(root: yaml.Node) -> None:
    """Refuse alias bombs and absurd nesting before anything is built from the nodes."""
    stack, seen, aliases = [(root, 1)], set(), 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _ShapeError(f"nested deeper than {MAX_DEPTH} levels", node)
        if id(node) in seen:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _ShapeError(f"more than {MAX_ALIASES} aliases; records do not need that many", node)
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((part, depth + 1) for pair in node.value for part in pair)
    memo: dict[int, int] = {}
    if _expanded_size(root, memo) > MAX_EXPANDED_NODES:
        # Name the first top-level value that expands too far, so the message points at the bomb.
        children = root.value if isinstance(root, (yaml.SequenceNode, yaml.MappingNode)) else []
        parts = [part for pair in children for part in pair] if isinstance(root, yaml.MappingNode) else children
        culprit = max(parts, key=lambda n: memo.get(id(n), 0), default=root)
        raise _ShapeError(f"aliases expand to more than {MAX_EXPANDED_NODES:,} values; records do not need that many",
                          culprit)


CFastLoader = getattr(yaml, "CSafeLoader", None)


def load_yaml_with_lines(text: str, path: str, line_offset: int = 0) -> tuple[Any, list[dict[str, int]]]:
    """Parse YAML safely; return the data and, per record (the mapping, or each list item), key -> 1-based line."""
    loader = None
    try:
        loader = _LineLoader("")
        node = _compose(text)
        if node is None:
            return None, []
        _check_shape(node)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 + line_offset
        raise ReaderError(path, f"invalid YAML: character #x{exc.character:04x} is not allowed", line=line,
                          hint="remove control characters from the file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark else None
        raise ReaderError(path, f"invalid YAML: {exc.problem or exc.context}", line=line,
                          hint="check the indentation and quote values that contain ': '") from None
    except _ShapeError as exc:
        line = exc.line + 1 + line_offset if exc.line is not None else None
        raise ReaderError(path, f"invalid YAML: {exc}", line=line,
                          hint="write the values out; a record needs no deep nesting or many aliases") from None
    except yaml.YAMLError as exc:
        raise ReaderError(path, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ReaderError(path, "invalid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an unhashable mapping key
        raise ReaderError(path, f"invalid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    items = [node] if isinstance(node, yaml.MappingNode) else list(node.value) if isinstance(node, yaml.SequenceNode) else []
    lines: list[dict[str, int]] = []
    for item in items:
        keys = {str(k.value): k.start_mark.line + 1 + line_offset
                for k, _ in (item.value if isinstance(item, yaml.MappingNode) else []) if isinstance(k, yaml.ScalarNode)}
        keys["__start__"] = item.start_mark.line + 1 + line_offset
        lines.append(keys)
    return data, lines


def records_from_data(data: Any, lines: list[dict[str, int]], path: str, fmt: str) -> ReadResult:
    """Turn parsed YAML (a mapping or a list of mappings) into native records."""
    result = ReadResult()
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        item_lines = dict(lines[index]) if index < len(lines) else {}
        start = item_lines.pop("__start__", None)
        if not isinstance(item, dict):
            result.problems.append(Problem(path, f"record {index + 1} is not a mapping of fields", line=start,
                                           hint="write 'title: ...', 'pmid: ...' and so on, one per line"))
            continue
        fields = {str(k): v for k, v in item.items()}
        result.records.append(Record(fields=fields, source=SourceRef(path, start), native=True,
                                     field_lines=item_lines, format=fmt))
    return result


def read(text: str, path: str) -> ReadResult:
    """Read one record (a mapping) or several (a list of mappings)."""
    data, lines = load_yaml_with_lines(text, path)
    if data is None:
        return ReadResult(problems=[Problem(path, "the file is empty", severity="warning")])
    if not isinstance(data, (dict, list)):
        raise ReaderError(path, "expected a record (a mapping of fields) or a list of records", line=1,
                          hint="start with 'title: ...'")
    return records_from_data(data, lines, path, "yaml")
