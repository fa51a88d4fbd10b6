"""`digest import`: exports become native YAML records that read back to the same article."""

from __future__ import annotations

import subprocess
import sys
import os

import pytest

from generator.load import load_articles
from tests.conftest import REPO, SHARED

EXAMPLE = REPO / "content"
EXPORTS = [EXAMPLE / "oncology/29385370.nbib", EXAMPLE / "oncology/29226797.xml", EXAMPLE / "oncology/29972754.ris",
           EXAMPLE / "oncology/30592986.bib", EXAMPLE / "autoimmunity/30842314.json"]


def load_folder(folder):
    return {a.id: a for a in load_articles(folder, folder.parent).articles}


def test_imported_records_read_back_to_the_same_articles(tmp_path):
    from generator.importer import import_files

    source = tmp_path / "exports"
    source.mkdir()
    for path in EXPORTS:
        (source / path.name).write_bytes(path.read_bytes())
    written, skipped, problems = import_files(sorted(source.iterdir()), tmp_path / "content")
    assert sorted(p.name for p in written) == sorted(f"{p.stem}.yaml" for p in EXPORTS)
    assert not skipped and not [p for p in problems if p.severity == "error"]
    original, imported = load_folder(source), load_folder(tmp_path / "content")
    assert original.keys() == imported.keys()
    for article_id, article in original.items():
        copy = imported[article_id]
        for field in ("title", "pmid", "doi", "authors", "journal", "journal_abbrev", "published", "volume", "issue",
                      "pages", "abstract", "mesh_terms", "keywords", "publication_types", "substances", "issn"):
            assert getattr(copy, field) == getattr(article, field), (article_id, field)


def test_import_never_overwrites_without_force(tmp_path):
    from generator.importer import import_files

    target = tmp_path / "content"
    target.mkdir()
    (target / "29385370.yaml").write_text("title: mine\npmid: 29385370\n", encoding="utf-8")
    written, skipped, _ = import_files([EXPORTS[0]], target)
    assert written == [] and [p.name for p in skipped] == ["29385370.yaml"]
    assert (target / "29385370.yaml").read_text() == "title: mine\npmid: 29385370\n"
    written, skipped, _ = import_files([EXPORTS[0]], target, force=True)
    assert [p.name for p in written] == ["29385370.yaml"]
    assert "Tisagenlecleucel" in (target / "29385370.yaml").read_text()


@pytest.mark.skipif(not (SHARED / "realdata").exists(), reason="realdata not on this machine")
def test_cli_imports_a_many_record_medline_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "generator", "import", "--root", str(tmp_path),
                             str(SHARED / "realdata/rispy/example_pubmed.txt")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Imported 10 records into ")
    assert len(list((tmp_path / "content").glob("*.yaml"))) == 10
