"""Markdown records: YAML front matter is the record, the body is the curator's notes."""

from __future__ import annotations

import re

from generator.errors import ReaderError
from generator.readers.common import ReadResult
from generator.readers.yaml_records import load_yaml_with_lines, records_from_data

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def read(text: str, path: str) -> ReadResult:
    """Read the front matter as one record and keep the Markdown body as its notes."""
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise ReaderError(path, "no front matter", line=1,
                          hint="a record file starts with a '---' line, its fields, and another '---' line")
    # YAML marks are 0-based and the front matter starts after the opening '---' line (Hugo #9857).
    data, lines = load_yaml_with_lines(match.group(1) or "", path, line_offset=1)
    if not isinstance(data, dict):
        raise ReaderError(path, "the front matter must be a mapping of fields", line=2,
                          hint="write 'title: ...', 'pmid: ...' and so on, one per line")
    body = text[match.end():].strip()
    if body:
        if "notes" in data:
            raise ReaderError(path, "notes given both in the front matter and as the body",
                              line=lines[0].get("notes") if lines else None, hint="keep one of them")
        data["notes"] = body
        if lines:
            lines[0]["notes"] = text[: match.end()].count("\n") + 1
    return records_from_data(data, lines, path, "markdown")
