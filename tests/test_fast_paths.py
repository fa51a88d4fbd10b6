"""The hand-written fast paths of the render stage say exactly what the plain code they replace says."""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import replace

import jinja2
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from generator.load import load_articles
from generator.metadata import scholarly_json_ld, scholarly_json_ld_text
from generator.model import Author
from generator.render import html_lines, json_for_script, value_key
from tests.conftest import REPO

TRICKY = ["</script><script>alert(1)</script>", "<!--", "\u2028\u2029", "\"quoted\" \\ back", "Zürich – α/β…",
          "\ud7ff\ue000", "&amp; &lt;", "\t tab\nnewline", "", " "]


def example_articles():
    return load_articles(REPO / "content", REPO).articles


def test_json_ld_text_equals_the_encoded_data_for_the_example_digest():
    for article in example_articles():
        for url in ("", "https://example.org/digest/articles/1/"):
            assert scholarly_json_ld_text(article, url) == str(json_for_script(scholarly_json_ld(article, url)))


@settings(max_examples=200, deadline=None)
@given(title=st.one_of(st.sampled_from(TRICKY), st.text()), name=st.one_of(st.sampled_from(TRICKY), st.text(min_size=1)),
       journal=st.text(), doi=st.text())
def test_json_ld_text_equals_the_encoded_data_for_any_text(title, name, journal, doi):
    article = replace(example_articles_cached()[0], title=title or "x", journal=journal, doi=doi,
                      authors=(Author(name=name, family=name, given=name),))
    assert json.loads(scholarly_json_ld_text(article, "https://e.org/a/"))  # well-formed
    assert scholarly_json_ld_text(article, "https://e.org/a/") == str(json_for_script(scholarly_json_ld(article, "https://e.org/a/")))


_CACHE: list = []


def example_articles_cached():
    if not _CACHE:
        _CACHE.extend(example_articles())
    return _CACHE


LINK_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-10**6, 10**6) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(LINK_VALUES, LINK_VALUES)
def test_value_keys_are_equal_exactly_when_the_values_are(first, second):
    """A similar list's key (`value_key`) must not depend on how its strings were made (interned,
    shared or copied: a new process makes them differently) and must tell any two values apart,
    0.5 from 0.50001 and None from "" included."""
    copied = pickle.loads(pickle.dumps(first))
    assert value_key(first) == value_key(copied) == value_key(_with_copied_strings(first))
    if repr(first) != repr(second):  # repr tells 1 from 1.0 and True from 1, as the page would
        assert value_key(first) != value_key(second)


def _with_copied_strings(value):
    if isinstance(value, str):
        return "".join(list(value))  # an equal string that is another object, never interned
    if isinstance(value, (list, tuple)):
        return type(value)(_with_copied_strings(v) for v in value)
    return value


def test_value_keys_tell_similar_lists_apart():
    assert value_key([("A title", None, 0.5)]) != value_key([("A title", None, 0.50001)])
    assert value_key([("A title", None)]) != value_key([("A title", "")])
    assert value_key([("a", "b")]) != value_key([("ab", "")])
    assert value_key(sys.intern("x" * 40)) == value_key("".join(["x"] * 40))


PATH_PARTS = st.sampled_from(["", ".", "..", "...", "a", ".a", "a.", "index.html", "a\\b", "a\x00", "\n", "é", "/"])


@settings(max_examples=400, deadline=None)
@given(paths=st.lists(st.lists(PATH_PARTS, min_size=1, max_size=4).map("/".join), min_size=1, max_size=6))
def test_checking_a_build_s_paths_at_once_refuses_exactly_what_checking_each_refuses(paths):
    """The write stage checks every output path in one regular-expression pass (`checked_paths`):
    it must refuse a list exactly when one of its paths is refused, naming that path."""
    from generator import write
    from generator.errors import DigestError

    def refused_one_by_one():
        for path in paths:
            write._CHECKED.clear()
            try:
                write.checked_path(path)
            except DigestError as exc:
                return exc.problems[0].path
        return None

    expected = refused_one_by_one()
    write._CHECKED.clear()
    try:
        write.checked_paths(paths)
        found = None
    except DigestError as exc:
        found = exc.problems[0].path
    assert found == expected


@settings(max_examples=150, deadline=None)
@given(data=st.data(), source=st.binary(min_size=1, max_size=3000), kernel=st.booleans())
def test_a_spliced_file_holds_exactly_its_parts(tmp_path_factory, data, source, kernel):
    """`write_spliced` (the digest-wide exports of an edit): bytes written and ranges of the live
    file copied by the kernel, or read and written where the system refuses that, in order."""
    import os

    from generator import write

    bound = st.integers(0, len(source))
    parts = data.draw(st.lists(st.one_of(st.binary(max_size=50), st.tuples(bound, bound).map(lambda p: (min(p), max(p)))),
                               max_size=12))
    expected = b"".join(p if isinstance(p, bytes) else source[p[0]:p[1]] for p in parts)
    folder = tmp_path_factory.mktemp("splice")
    (folder / "live").write_bytes(source)
    (folder / "target").write_bytes(b"an older file, replaced")
    handle = os.open(folder / "live", os.O_RDONLY)
    kept = write._KERNEL_COPY
    try:
        write._KERNEL_COPY = kernel and kept
        write.write_spliced(str(folder / "target"), parts, handle)
    finally:
        write._KERNEL_COPY = kept
        os.close(handle)
    assert (folder / "target").read_bytes() == expected
    assert (folder / "live").read_bytes() == source


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(TRICKY), st.text()).flatmap(
    lambda text: st.sampled_from([text, Markup(text)])), min_size=1, max_size=12))
def test_the_lines_filter_prints_what_a_loop_over_the_entries_prints(entries):
    """`{{ items|lines }}` (the theme's listings) gives the bytes of the loop it replaced: markup
    entries as they are, anything else escaped, one per line."""
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["lines"] = html_lines
    loop = env.from_string("<ol>\n{% for item in items %}\n{{ item }}\n{% endfor %}\n</ol>").render(items=entries)
    assert env.from_string("<ol>\n{{ items|lines }}\n</ol>").render(items=entries) == loop
