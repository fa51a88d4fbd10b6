"""Scholarly metadata derived from an article: page ranges, schema.org JSON-LD, feed dates. Pure."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from generator.model import Article, PubDate


def page_range(article: Article) -> tuple[str, str]:
    """Return (first page, last page), expanding MEDLINE's abbreviated last page: '2124-32' -> '2132'."""
    match = re.fullmatch(r"\s*([A-Za-z]*\d+[A-Za-z]*)\s*(?:[-–—]+\s*([A-Za-z]*\d+[A-Za-z]*))?\s*", article.pages or "")
    if not match:
        return (article.pages.split("-")[0].strip() if article.pages else article.elocation), ""
    first, last = match.group(1), match.group(2) or ""
    if last.isdigit() and first.isdigit() and len(last) < len(first):
        last = first[: len(first) - len(last)] + last
    return first, last


def rfc3339(date: PubDate, fallback: str = "1970-01-01") -> str:
    """Return an Atom/sitemap timestamp for a (possibly partial) date; deterministic, UTC midnight."""
    if date.year:
        return f"{date.year:04d}-{date.month or 1:02d}-{date.day or 1:02d}T00:00:00Z"
    return f"{fallback}T00:00:00Z"


def updated_date(article: Article) -> str:
    """Return the date an article counts as updated in feeds: publication, else e-publication, else added."""
    if article.published.year:
        return rfc3339(article.published)
    if article.epublished.year:
        return rfc3339(article.epublished)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", article.added or ""):
        return f"{article.added}T00:00:00Z"
    return rfc3339(PubDate())


def scholarly_json_ld(article: Article, page_url: str = "") -> dict[str, Any]:
    """Return schema.org ScholarlyArticle data for the page's JSON-LD block."""
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "ScholarlyArticle",
        "headline": article.title[:110],
        "name": article.title,
    }
    if page_url:
        data["url"] = page_url
    if article.abstract:
        data["description"] = article.abstract_text
    if article.published.iso:
        data["datePublished"] = article.published.iso
    authors = []
    for author in article.authors:
        person: dict[str, Any] = {"@type": "Organization" if author.collective else "Person", "name": author.name}
        if author.family and not author.collective:
            person["familyName"] = author.family
        if author.given and not author.collective:
            person["givenName"] = author.given
        if author.orcid:
            person["sameAs"] = f"https://orcid.org/{author.orcid}"
        if author.affiliations:
            person["affiliation"] = [{"@type": "Organization", "name": a} for a in author.affiliations]
        authors.append(person)
    if authors:
        data["author"] = authors
    journal = article.journal or article.journal_abbrev
    if journal:
        part: dict[str, Any] = {"@type": "Periodical", "name": journal}
        if article.issn:
            part["issn"] = list(article.issn)
        if article.volume:
            part = {"@type": "PublicationVolume", "volumeNumber": article.volume, "isPartOf": part}
        if article.issue:
            part = {"@type": "PublicationIssue", "issueNumber": article.issue, "isPartOf": part}
        data["isPartOf"] = part
    first, last = page_range(article)
    if first:
        data["pageStart"] = first
    if last:
        data["pageEnd"] = last
    identifiers = [("PMID", article.pmid), ("DOI", article.doi), ("PMCID", article.pmcid)]
    data["identifier"] = [{"@type": "PropertyValue", "propertyID": k, "value": v} for k, v in identifiers if v]
    if article.doi:
        data["sameAs"] = f"https://doi.org/{article.doi}"
    if article.mesh_terms:
        data["about"] = [{"@type": "DefinedTerm", "name": m.descriptor, "inDefinedTermSet": "https://id.nlm.nih.gov/mesh/"}
                         for m in article.mesh_terms]
    if article.keywords:
        data["keywords"] = ", ".join(article.keywords)
    if article.language:
        data["inLanguage"] = article.language
    return data


# The article page's JSON-LD block, written directly --------------------------------------------------
# `json_for_script(scholarly_json_ld(article, page_url))` builds a dict of ~60 small dicts and has
# json encode it; this writes the same text (keys sorted, compact, `<>&` as \u escapes) from the
# article in a third of the time, reusing the text of MeSH terms every article shares. Keep the two
# in step (their output must be identical for every article).

_json_string = json.encoder.encode_basestring  # how json.dumps(ensure_ascii=False) writes a string


def _json_value(value: Any) -> str:
    if type(value) is str:
        # Printable text without quote or backslash is written as it is (json escapes nothing else).
        if value.isprintable() and '"' not in value and "\\" not in value:
            return f'"{value}"'
        return _json_string(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=65536)
def _defined_term(name: str) -> str:
    return f'{{"@type":"DefinedTerm","inDefinedTermSet":"https://id.nlm.nih.gov/mesh/","name":{_json_value(name)}}}'


def scholarly_json_ld_text(article: Article, page_url: str = "") -> str:
    """Return `scholarly_json_ld(article, page_url)` as JSON safe inside <script> (see `json_for_script`)."""
    j = _json_value
    parts = ['"@context":"https://schema.org"', '"@type":"ScholarlyArticle"']
    if article.mesh_terms:
        parts.append('"about":[' + ",".join([_defined_term(m.descriptor) for m in article.mesh_terms]) + "]")
    if article.authors:
        people = []
        for author in article.authors:
            person = '{"@type":"Organization"' if author.collective else '{"@type":"Person"'
            if author.affiliations:
                person += ',"affiliation":[' + ",".join(
                    ['{"@type":"Organization","name":' + j(a) + "}" for a in author.affiliations]) + "]"
            if not author.collective:
                if author.family:
                    person += ',"familyName":' + j(author.family)
                if author.given:
                    person += ',"givenName":' + j(author.given)
            person += ',"name":' + j(author.name)
            if author.orcid:
                person += ',"sameAs":' + j(f"https://orcid.org/{author.orcid}")
            people.append(person + "}")
        parts.append('"author":[' + ",".join(people) + "]")
    if article.published.iso:
        parts.append('"datePublished":' + j(article.published.iso))
    if article.abstract:
        parts.append('"description":' + j(article.abstract_text))
    parts.append('"headline":' + j(article.title[:110]))
    identifiers = [("PMID", article.pmid), ("DOI", article.doi), ("PMCID", article.pmcid)]
    parts.append('"identifier":[' + ",".join(
        ['{"@type":"PropertyValue","propertyID":"' + k + '","value":' + j(v) + "}" for k, v in identifiers if v]) + "]")
    if article.language:
        parts.append('"inLanguage":' + j(article.language))
    journal = article.journal or article.journal_abbrev
    if journal:
        part = '{"@type":"Periodical",' + (
            '"issn":[' + ",".join([j(i) for i in article.issn]) + "]," if article.issn else "") + '"name":' + j(journal) + "}"
        if article.volume:
            part = '{"@type":"PublicationVolume","isPartOf":' + part + ',"volumeNumber":' + j(article.volume) + "}"
        if article.issue:
            part = '{"@type":"PublicationIssue","isPartOf":' + part + ',"issueNumber":' + j(article.issue) + "}"
        parts.append('"isPartOf":' + part)
    if article.keywords:
        parts.append('"keywords":' + j(", ".join(article.keywords)))
    parts.append('"name":' + j(article.title))
    first, last = page_range(article)
    if last:
        parts.append('"pageEnd":' + j(last))
    if first:
        parts.append('"pageStart":' + j(first))
    if article.doi:
        parts.append('"sameAs":' + j(f"https://doi.org/{article.doi}"))
    if page_url:
        parts.append('"url":' + j(page_url))
    text = "{" + ",".join(parts) + "}"
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
