"""The digest's configuration (`digest.yaml`), validated strictly so typos are caught."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from generator.errors import DigestError, Problem
from generator.similarity_settings import SimilarityConfig

CONFIG_FILE = "digest.yaml"


@dataclass(frozen=True)
class SiteConfig:
    """Everything a build depends on besides the content files themselves."""

    root: Path
    title: str = "Review digest"
    description: str = ""
    base_url: str = ""
    language: str = "en"
    author: str = ""
    cname: str = ""
    content_dir: str = "content"
    output_dir: str = "site"
    templates_dir: str = "templates"
    static_dir: str = "static"
    similar: SimilarityConfig | None = field(default_factory=SimilarityConfig)
    feed_limit: int = 50
    per_page: int = 100  # articles per listing page (home, topic, author...); 0: every article on one page
    search: bool = True
    taxonomies: tuple[str, ...] = ("topics", "authors", "journals", "years", "types")
    ncbi_email: str = ""  # contact address sent to NCBI E-utilities by `digest add` and `digest refresh`

    @property
    def content_path(self) -> Path:
        return (self.root / self.content_dir).resolve()

    @property
    def output_path(self) -> Path:
        return (self.root / self.output_dir).resolve()

    @property
    def templates_path(self) -> Path:
        return (self.root / self.templates_dir).resolve()

    @property
    def static_path(self) -> Path:
        return (self.root / self.static_dir).resolve()

    @property
    def base_path(self) -> str:
        """Return the sub-path of `base_url` ('/' or '/repo/'), where the site lives on its host."""
        path = urlsplit(self.base_url).path if self.base_url else "/"
        return "/" + path.strip("/") + "/" if path.strip("/") else "/"


_SCALARS = {
    "title": str, "description": str, "base_url": str, "language": str, "author": str, "cname": str,
    "content_dir": str, "output_dir": str, "templates_dir": str, "static_dir": str,
    "search": bool, "ncbi_email": str,
}
_KNOWN_KEYS = sorted(set(_SCALARS) | {"similar", "feed", "taxonomies", "paginate"})
_SIMILAR_KEYS = ("count", "min_score", "fields")
_SIMILAR_FIELDS = ("title", "abstract", "mesh", "keywords")


def _did_you_mean(key: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(choices)


def _key_lines(text: str) -> dict[str, int]:
    """Return the 1-based line of each top-level key, for error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_config(root: Path, overrides: dict[str, Any] | None = None) -> SiteConfig:
    """Read `digest.yaml` from `root` (defaults when absent), apply command-line overrides, validate."""
    root = root.resolve()
    path = root / CONFIG_FILE
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    shown = CONFIG_FILE
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text) or {}
        except UnicodeDecodeError:
            raise DigestError(Problem(shown, "is not UTF-8 text", hint="save it as UTF-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise DigestError(
                Problem(shown, f"invalid YAML: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None)
            )
        if not isinstance(data, dict):
            raise DigestError(Problem(shown, "must be a mapping of settings, e.g. 'title: My digest'"))
        lines = _key_lines(text)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _validate(root, data, lines, shown)


def _validate(root: Path, data: dict[str, Any], lines: dict[str, int], shown: str) -> SiteConfig:
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    def fail(key: str, message: str, hint: str = "") -> None:
        problems.append(Problem(shown, message, line=lines.get(key), hint=hint))

    for key, value in data.items():
        key = str(key)
        if key in _SCALARS:
            kind = _SCALARS[key]
            if kind is bool and not isinstance(value, bool):
                fail(key, f"'{key}' must be true or false, got {value!r}")
            elif kind is str and not isinstance(value, (str, int, float)):
                fail(key, f"'{key}' must be text, got {type(value).__name__}")
            else:
                values[key] = value if kind is bool else str(value)
        elif key == "similar":
            similar = _parse_similar(value, lambda m, h="": fail("similar", m, h))
            values["similar"] = similar
        elif key == "feed":
            if isinstance(value, dict) and set(value) <= {"limit"} and isinstance(value.get("limit", 50), int):
                values["feed_limit"] = max(1, value.get("limit", 50))
            else:
                fail(key, "'feed' must be a mapping like 'feed: {limit: 50}'")
        elif key == "paginate":
            if value is True:
                values["per_page"] = SiteConfig.per_page
            elif value is False or (isinstance(value, int) and value >= 0):
                values["per_page"] = int(value)
            else:
                fail(key, f"'paginate' must be a number of articles per listing page, or false for one page, "
                          f"got {value!r}", "e.g. 'paginate: 100'")
        elif key == "taxonomies":
            allowed = SiteConfig.taxonomies
            if not isinstance(value, list) or any(v not in allowed for v in value):
                fail(key, f"'taxonomies' must be a list drawn from: {', '.join(allowed)}")
            else:
                values["taxonomies"] = tuple(value)
        else:
            fail(key, f"unknown setting '{key}'", _did_you_mean(key, _KNOWN_KEYS))
    base_url = values.get("base_url", "")
    if base_url and urlsplit(base_url).scheme not in ("http", "https"):
        fail("base_url", f"'base_url' must start with http:// or https://, got {base_url!r}")
    for key in ("content_dir", "output_dir"):
        if key in values and not values[key].strip():
            fail(key, f"'{key}' must not be empty")
    if problems:
        raise DigestError(problems)
    if base_url:
        values["base_url"] = base_url.rstrip("/") + "/"
    config = SiteConfig(root=root, **values)
    if config.output_path == config.root or config.output_path in config.content_path.parents or (
        config.output_path == config.content_path
    ):
        raise DigestError(Problem(shown, f"output_dir {config.output_dir!r} would overwrite the digest's own files"))
    return config


def _parse_similar(value: Any, fail) -> SimilarityConfig | None:
    if value is False:
        return None
    if value is True or value is None:
        return SimilarityConfig()
    if not isinstance(value, dict):
        fail("'similar' must be false or a mapping like 'similar: {count: 5, min_score: 0.15}'")
        return SimilarityConfig()
    config = SimilarityConfig()
    for key, item in value.items():
        if key == "count" and isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            config = replace(config, count=item)
        elif key == "min_score" and isinstance(item, (int, float)) and not isinstance(item, bool) and item >= 0:
            config = replace(config, min_score=float(item))
        elif key == "min_score" and item in ("auto", None):
            config = replace(config, min_score=None)
        elif key == "fields" and isinstance(item, list) and item and all(f in _SIMILAR_FIELDS for f in item):
            config = replace(config, fields=tuple(item))
        elif key in _SIMILAR_KEYS:
            fail(f"'similar.{key}' has an invalid value {item!r}",
                 "count: a whole number; min_score: a number >= 0 or auto; fields: a list of " + ", ".join(_SIMILAR_FIELDS))
        else:
            fail(f"unknown setting 'similar.{key}'", _did_you_mean(str(key), _SIMILAR_KEYS))
    return config
