"""The hand-written fast paths of the render stage say exactly what the plain code they replace says."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from generator.load import load_articles
from generator.metadata import scholarly_json_ld, scholarly_json_ld_text
from generator.model import Author
from generator.render import json_for_script
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
