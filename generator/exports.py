"""Citation downloads: BibTeX, RIS and CSL-JSON for one article (`cite.*`) or the digest (`digest.*`).

Output is deterministic so rebuilding an unchanged digest leaves the files byte-identical: fields come
in a fixed order, JSON keys are sorted, and citation keys (`smith2025chimeric`) are made unique
across a digest by `citation_keys`, which depends only on the articles, not on their order. Each
format is written so the site's own readers (`generator.readers.bibtex/ris/csl_json`) read back the
same fields; PMID and PMCID travel the way Zotero keeps them (BibTeX `pmid`/`pmcid` fields, RIS
`M2  - PMID: 123` as Zotero's Extra, CSL `PMID`/`PMCID`).
"""

from __future__ import annotations

import itertools
import json
import operator
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from generator.model import MONTHS, Article, Author, PubDate

_STOPWORDS = frozenset(
    "a an the of on in for and to with from by at is are as its into via or be do does how what why "
    "when which who".split()
)
_ASCII_FOLD = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_BIBTEX_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "&": r"\&", "#": r"\#",
    "_": r"\_", "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_BIBTEX_SPECIAL = re.compile(r"[\\{}%&#_$~^]")
# TeX ligatures a reader would turn into other characters: `--` (en dash), ``, '', ?` and !`.
_LIGATURE = re.compile(r"(-(?=-)|'(?=')|`(?=`)|[?!](?=`))")
_TITLE_WORDS = re.compile(r"[\s\-/]+")
_NOT_KEY_CHAR = re.compile(r"[^a-z0-9]")
CRLF = "\r\n"


# ---------------------------------------------------------------------------------------------
# Citation keys.


def citation_key(article: Article) -> str:
    """Return the base key: first author's family name, year, first significant title word."""
    author = next(iter(article.authors), None)
    name = _ascii_word(_key_name(author)) if author else ""
    words = (_ascii_word(w) for w in _TITLE_WORDS.split(article.title))
    word = next((w for w in words if w and w not in _STOPWORDS), "")
    key = f"{name or 'anon'}{article.year or ''}{word}"
    return key if key != "anon" else f"anon{_ascii_word(article.id)}"


# Base keys of the last call's articles, by identity: a rebuild of `digest serve` gets the same
# Article objects for unchanged records, and needs the key of every article again.
_BASE_KEYS: dict[int, tuple[Article, str]] = {}


def citation_keys(articles: Iterable[Article]) -> dict[str, str]:
    """Return `article.id -> key`, unique across the articles, independent of their order (see
    `unique_citation_keys`)."""
    global _BASE_KEYS
    known, kept = _BASE_KEYS, {}
    bases = {}
    for article in articles:
        entry = known.get(id(article))
        if entry is None or entry[0] is not article:
            entry = (article, citation_key(article))
        kept[id(article)] = entry
        bases[article.id] = entry[1]
    _BASE_KEYS = kept
    return unique_citation_keys(bases)


def unique_citation_keys(bases: Mapping[str, str]) -> dict[str, str]:
    """Return `article.id -> key` from each article's `citation_key` (`bases`), in the order of
    `bases`: the first article (by id) with a base key keeps it; the others, taken by base key then
    id, get `a`, `b`, ... `aa`, ... suffixes, each the first not taken. Only those others are sorted
    (a digest's keys are nearly all unique: sorting all of them cost 40 ms at 10,000 articles)."""
    first: dict[str, str] = {}  # base key -> the first article (by id) with it
    for article_id, base in bases.items():
        holder = first.get(base)
        if holder is None or article_id < holder:
            first[base] = article_id
    used = set(first)
    suffixed: dict[str, str] = {}
    for base, article_id in sorted((base, i) for i, base in bases.items() if first[base] != i):
        suffixed[article_id] = key = next(k for k in _suffixed(base) if k not in used)
        used.add(key)
    return {article_id: suffixed.get(article_id, base) for article_id, base in bases.items()}


def updated_citation_keys(last_bases: Mapping[str, str], last_keys: Mapping[str, str], suffixed: set[str],
                          bases: Mapping[str, str]) -> dict[str, str] | None:
    """Return `unique_citation_keys(bases)` from the last call's (its bases and keys, and the bases
    that got suffixes), when the same articles in the same order changed a few base keys and none
    of those changes can move another article's key; else None.

    An article's new base key is its key when no article holds that key; giving up its old one
    changes nobody's when it was its alone and is not a suffixed key some group skipped (a group's
    base followed by letters). A title edit of the daemon then costs 2 ms, not 22."""
    if len(bases) != len(last_bases) or list(bases) != list(last_bases):
        return None
    changed = list(itertools.compress(bases, map(operator.ne, bases.values(), last_bases.values())))
    if len(changed) > 16:
        return None
    used = set(last_keys.values())
    keys = dict(last_keys)
    for article_id in changed:
        old, new = last_bases[article_id], bases[article_id]
        if old in suffixed or last_keys[article_id] != old or new in used or \
                any(_suffix_of(key, base) for key in (old, new) for base in suffixed):
            return None
        used.discard(old)
        used.add(new)
        keys[article_id] = new
    return keys


def _suffix_of(key: str, base: str) -> bool:
    """Whether `key` is one of the keys `_suffixed(base)` yields."""
    rest = key[len(base):]
    return key.startswith(base) and bool(rest) and rest.isascii() and rest.isalpha() and rest.islower()


def _suffixed(base: str) -> Iterable[str]:
    """Yield base+'a' ... base+'z', base+'aa' ..."""
    length = 1
    while True:
        for index in range(26**length):
            suffix = ""
            for _ in range(length):
                index, rest = divmod(index, 26)
                suffix = chr(ord("a") + rest) + suffix
            yield base + suffix
        length += 1


def _key_name(author: Author) -> str:
    if author.collective or not author.family:
        return author.name.split()[0] if author.name.split() else ""
    return author.family


def _ascii_word(text: str) -> str:
    """Lower-case ASCII letters and digits only: 'Müller-Šimić' -> 'mullersimic'."""
    text = text.lower()
    if not text.isascii():  # ASCII needs no folding: NFKD leaves it as it is
        text = "".join(_ASCII_FOLD.get(c, c) for c in text)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_KEY_CHAR.sub("", text)


# ---------------------------------------------------------------------------------------------
# Shared field preparation.


def _date(article: Article) -> PubDate:
    return article.published if article.published.year else article.epublished


def _abstract(article: Article) -> str:
    """The abstract on one line, structured sections as 'LABEL: text'."""
    return _shared(article)[0]


def _keywords(article: Article) -> list[str]:
    """MeSH descriptors, then the keywords, without repeats."""
    return list(_shared(article)[1])


_SHARED: dict[int, tuple[Article, tuple[str, tuple[str, ...]]]] = {}


def _shared(article: Article) -> tuple[str, tuple[str, ...]]:
    """Return the abstract on one line and the keywords, made once for the three formats of an article
    (a site writes its cite.bib, cite.ris and cite.json one after the other)."""
    found = _SHARED.get(id(article))
    if found is not None and found[0] is article:
        return found[1]
    words = [m.descriptor for m in article.mesh_terms] + list(article.keywords)
    shared = (_one_line(article.abstract_text),
              tuple(dict.fromkeys(" ".join(w.split()) for w in words if w.strip())))
    if len(_SHARED) >= 16:
        _SHARED.clear()
    _SHARED[id(article)] = (article, shared)
    return shared


def forget_digest_memos() -> None:
    """Forget the articles the memos above hold (see `render.forget_digest_memos`)."""
    global _BASE_KEYS
    _BASE_KEYS = {}
    _SHARED.clear()


def _keyword_list(words: list[str]) -> str:
    """Join with '; ' so descriptors like 'Muscle, Skeletal' survive the readers' comma split."""
    text = "; ".join(w.replace(";", ",") for w in words)
    return text + ";" if len(words) == 1 and "," in text else text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# BibTeX.


def bibtex_escape(text: str) -> str:
    """Escape TeX specials (`{}`, `%`, `&`, `#`, `_`, `$`, `~`, `^`, backslash) and ligatures."""
    return _bibtex_escape_line(_one_line(text))


def _bibtex_escape_line(text: str) -> str:
    """`bibtex_escape` of a text already on one line."""
    if _BIBTEX_SPECIAL.search(text):  # most fields have none: a search is much cheaper than a sub
        text = _BIBTEX_SPECIAL.sub(_bibtex_special, text)
    if "--" in text or "''" in text or "`" in text:  # every ligature _LIGATURE matches has one of these
        text = _LIGATURE.sub(r"\1{}", text)
    return text


def _bibtex_special(match: re.Match) -> str:
    return _BIBTEX_ESCAPES[match.group(0)]


def _bibtex_pages(pages: str) -> str:
    """`1608-1617` -> `1608--1617` (BibTeX's en dash for ranges)."""
    text = re.sub(r"\s*[-\u2013]+\s*", "-", _one_line(pages))
    return _BIBTEX_SPECIAL.sub(_bibtex_special, text).replace("-", "--")


def _bibtex_verbatim(text: str) -> str:
    """DOIs and URLs are verbatim fields in BibLaTeX: no escapes, only braces percent-encoded."""
    return _one_line(text).replace("{", "%7B").replace("}", "%7D")


def _bibtex_name(author: Author) -> str:
    """`Family, Given`, with parts braced when they hold a comma or the word `and` in any case (which
    BibTeX reads as the next author: a given name "And"); groups as `{Name}`."""
    if author.collective or not author.family:
        return "{" + bibtex_escape(author.name) + "}"
    family, given = bibtex_escape(author.family), bibtex_escape(author.given)
    family = f"{{{family}}}" if _splits_names(family) else family
    given = f"{{{given}}}" if _splits_names(given) else given
    return f"{family}, {given}" if given else family


def _splits_names(part: str) -> bool:
    return "," in part or any(word.lower() == "and" for word in part.split())


CITATION_FILES = ("cite.bib", "cite.ris", "cite.json")  # written in every article's folder


def citation_file(article: Article, name: str, key: str) -> str:
    """Return the text of an article's citation file `name` (one of CITATION_FILES)."""
    if name == "cite.bib":
        return article_to_bibtex(article, key)
    if name == "cite.ris":
        return article_to_ris(article)
    return article_to_csl_json(article, key)


def article_to_bibtex(article: Article, key: str | None = None) -> str:
    """Return one `@article{...}` entry; pass the digest's key from `citation_keys` to match it."""
    date = _date(article)
    fields: list[tuple[str, str]] = [
        ("author", " and ".join(_bibtex_name(a) for a in article.authors)),
        ("title", "{" + bibtex_escape(article.title) + "}" if article.title else ""),
        ("journal", bibtex_escape(article.journal)),
        ("shortjournal", bibtex_escape(article.journal_abbrev)),
        ("year", str(date.year or "")),
        ("month", MONTHS[date.month - 1].lower() if date.year and date.month else ""),
        ("date", date.iso if date.day else ""),
        ("volume", bibtex_escape(article.volume)),
        ("number", bibtex_escape(article.issue)),
        ("pages", _bibtex_pages(article.pages)),
        ("doi", _bibtex_verbatim(article.doi)),
        ("pmid", bibtex_escape(article.pmid)),
        ("pmcid", bibtex_escape(article.pmcid)),
        ("issn", bibtex_escape(", ".join(article.issn))),
        ("url", _bibtex_verbatim(article.url)),
        ("language", bibtex_escape(article.language)),
        ("abstract", _bibtex_escape_line(_abstract(article))),  # both are on one line already
        ("keywords", _bibtex_escape_line(_keyword_list(_keywords(article)))),
    ]
    lines = [f"  {name} = {value if name == 'month' else '{' + value + '}'}" for name, value in fields if value]
    return f"@article{{{key or citation_key(article)},\n" + ",\n".join(lines) + "\n}\n"


def articles_to_bibtex(articles: Iterable[Article]) -> str:
    """Return the digest's `digest.bib`: one entry per article, in the order given."""
    articles = list(articles)
    keys = citation_keys(articles)
    return "\n".join(article_to_bibtex(a, keys[a.id]) for a in articles)


# ---------------------------------------------------------------------------------------------
# RIS.


def _ris_name(author: Author) -> str:
    """`Family, Given`; a person without given names keeps the comma (`Plato,`) so it is not read
    back as a group, and groups are written bare."""
    if author.collective or not author.family:
        return _one_line(author.name)
    return f"{_one_line(author.family)}, {_one_line(author.given)}".rstrip()


def _ris_pages(pages: str) -> list[tuple[str, str]]:
    start, _, end = _one_line(pages).partition("-")
    return [("SP", start.strip()), ("EP", end.strip())]


def _ris_date(date: PubDate) -> str:
    if not (date.year and date.month):
        return ""
    return f"{date.year:04d}/{date.month:02d}" + (f"/{date.day:02d}" if date.day else "")


def article_to_ris(article: Article) -> str:
    """Return one RIS record (Zotero's journalArticle tags), CRLF line ends as the spec says."""
    date = _date(article)
    tags: list[tuple[str, str]] = [("TY", "JOUR"), ("TI", article.title)]
    tags += [("AU", _ris_name(a)) for a in article.authors]
    tags += [("T2", article.journal), ("J2", article.journal_abbrev), ("PY", str(date.year or "")),
             ("DA", _ris_date(date)), ("VL", article.volume), ("IS", article.issue)]
    tags += _ris_pages(article.pages)
    tags += [("SN", issn) for issn in article.issn]
    tags += [("DO", article.doi), ("UR", article.url)]
    lines = [f"{tag}  - {line}" for tag, value in tags if (line := _one_line(value))]
    abstract, keywords = _shared(article)  # on one line already
    if abstract:
        lines.append(f"AB  - {abstract}")
    lines += [f"KW  - {word}" for word in keywords]
    tags = [("LA", article.language), ("M2", f"PMID: {article.pmid}" if article.pmid else ""),
            ("M2", f"PMCID: {article.pmcid}" if article.pmcid else "")]
    lines += [f"{tag}  - {line}" for tag, value in tags if (line := _one_line(value))]
    return CRLF.join(lines + ["ER  - ", ""])


def articles_to_ris(articles: Iterable[Article]) -> str:
    """Return the digest's `digest.ris`, records separated by a blank line."""
    return CRLF.join(article_to_ris(a) for a in articles)


# ---------------------------------------------------------------------------------------------
# CSL-JSON.


def _csl_name(author: Author) -> dict[str, str]:
    if author.collective or not author.family:
        return {"literal": _one_line(author.name)}
    name = {"family": _one_line(author.family)}
    if author.given:
        name["given"] = _one_line(author.given)
    return name


def article_to_csl(article: Article, key: str | None = None) -> dict[str, Any]:
    """Return one CSL-JSON item (`type: article-journal`), leaving out empty variables."""
    date = _date(article)
    parts = [p for p in (date.year, date.month, date.day if date.month else None) if p]
    item: dict[str, Any] = {
        "id": key or citation_key(article),
        "type": "article-journal",
        "title": _one_line(article.title),
        "author": [_csl_name(a) for a in article.authors],
        "container-title": _one_line(article.journal),
        "container-title-short": _one_line(article.journal_abbrev),
        "issued": {"date-parts": [parts]} if parts else None,
        "volume": _one_line(article.volume),
        "issue": _one_line(article.issue),
        "page": _one_line(article.pages),
        "DOI": article.doi,
        "PMID": article.pmid,
        "PMCID": article.pmcid,
        "ISSN": ", ".join(article.issn),
        "URL": article.url,
        "abstract": _abstract(article),
        "keyword": _keyword_list(_keywords(article)),
        "language": article.language,
    }
    return {name: value for name, value in item.items() if value}


def articles_to_csl_json(articles: Iterable[Article]) -> str:
    """Return the digest's `digest-csl.json`: an array of items, keys sorted, UTF-8, 2-space indent."""
    articles = list(articles)
    keys = citation_keys(articles)
    items = [article_to_csl(a, keys[a.id]) for a in articles]
    return json.dumps(items, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def article_to_csl_json(article: Article, key: str | None = None) -> str:
    """Return a one-item CSL-JSON array, the form citation managers import (`cite.json`)."""
    return _indented_json([article_to_csl(article, key)], "") + "\n"


def _indented_json(value: Any, indent: str) -> str:
    """`json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)`, byte for byte, for the strings,
    numbers, lists and dicts of CSL items: json's indented encoder is pure Python, and 3-4x slower."""
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if value and (kind is dict or kind is list or kind is tuple):
        inner = indent + "  "
        parts = []
        if kind is dict:
            for key, item in sorted(value.items()):
                if type(key) is not str:
                    break
                text = _json_string(item) if type(item) is str else _indented_json(item, inner)
                parts.append(f"{inner}{_json_string(key)}: {text}")
            else:
                return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
        else:
            for item in value:
                parts.append(inner + (_json_string(item) if type(item) is str else _indented_json(item, inner)))
            return "[\n" + ",\n".join(parts) + "\n" + indent + "]"
    if kind is int:
        return int.__repr__(value)
    # Booleans, null, empty containers, floats and anything unusual: json itself, indented to this depth.
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).replace("\n", "\n" + indent)


_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes strings with
