"""Readers turn one file's text into records. Each module exports `read(text, path) -> ReadResult`.

A reader never raises on bad input except with `ReaderError`; it reports what it could not read as
problems and goes on with the rest of the file.
"""

from __future__ import annotations

import importlib
import re

from generator.errors import ReaderError
from generator.readers.common import ReadResult

# Suffix -> reader module. `.txt` is shared by PubMed pages, MEDLINE and RIS: see `sniff_text_format`.
READERS_BY_SUFFIX = {
    ".yaml": "yaml_records",
    ".yml": "yaml_records",
    ".md": "markdown_records",
    ".markdown": "markdown_records",
    ".nbib": "medline",
    ".medline": "medline",
    ".xml": "pubmed_xml",
    ".ris": "ris",
    ".bib": "bibtex",
    ".bibtex": "bibtex",
    ".json": "csl_json",
}
FORMAT_NAMES = {
    "yaml_records": "YAML record (.yaml, .yml)",
    "markdown_records": "Markdown with YAML front matter (.md)",
    "pubmed_page": "PubMed abstract page saved as text (.txt)",
    "medline": "PubMed MEDLINE (.nbib, .txt starting with PMID-)",
    "pubmed_xml": "PubMed XML (.xml)",
    "ris": "RIS (.ris)",
    "bibtex": "BibTeX/BibLaTeX (.bib)",
    "csl_json": "CSL-JSON (.json)",
}
SUPPORTED_SUFFIXES = tuple(sorted(set(READERS_BY_SUFFIX) | {".txt"}))


def sniff_text_format(text: str) -> str:
    """Tell a `.txt` file's format from its first meaningful line."""
    head = text.lstrip("\ufeff \t\r\n")[:200]
    if re.match(r"PMID- ", head):
        return "medline"
    if re.match(r"TY {1,2}- |FN |PT [JBSP]\b", head):  # RIS, or Web of Science tagged (read by the RIS reader)
        return "ris"
    return "pubmed_page"


def reader_for(suffix: str, text: str) -> str | None:
    """Return the reader module name for a file, or None when the format is not supported."""
    suffix = suffix.lower()
    if suffix == ".txt":
        return sniff_text_format(text)
    return READERS_BY_SUFFIX.get(suffix)


def read_text(format_name: str, text: str, path: str) -> ReadResult:
    """Run the named reader on a file's text."""
    module = importlib.import_module(f"generator.readers.{format_name}")
    return module.read(text, path)


__all__ = ["FORMAT_NAMES", "ReadResult", "ReaderError", "SUPPORTED_SUFFIXES", "read_text", "reader_for"]
