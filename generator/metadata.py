"""Scholarly metadata derived from an article: page ranges, schema.org JSON-LD, feed dates. Pure."""

from __future__ import annotations

import re
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
