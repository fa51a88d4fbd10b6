"""Hostile and broken input (issue 9): each case gives a clear `path:line: message` or a working site,
in bounded time and memory, never a traceback or a hang; ids and slugs never leave the output folder.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

import generator.load as load_module
from generator.build import build
from generator.config import load_config
from generator.errors import DigestError
from generator.load import MAX_AUTHORS, load_articles, slugify
from tests.conftest import REPO, read_tree

CASE_SECONDS = 20  # every hostile case must end (build or refuse) within this
RECORD = "title: A fine article\npmid: {pmid}\nabstract: Fine.\n"


def write_digest(root: Path, files: dict[str, str | bytes], config: str = "search: false\n") -> Path:
    (root / "content").mkdir(parents=True, exist_ok=True)
    (root / "digest.yaml").write_text(config, encoding="utf-8")
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    return root


def timed_build(root: Path, **options):
    """Build; return (report or DigestError, seconds). Any other exception is a bug and fails the test."""
    start = time.perf_counter()
    try:
        result = build(load_config(root, {}), **options)
    except DigestError as exc:
        result = exc
    elapsed = time.perf_counter() - start
    assert elapsed < CASE_SECONDS, f"took {elapsed:.1f} s"
    return result, elapsed


def messages(result) -> list[str]:
    problems = result.problems if isinstance(result, DigestError) else result.warnings
    return [p.format() for p in problems]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "generator", *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert time.perf_counter() - start < CASE_SECONDS + 5
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), (result.returncode, result.stderr)
    return result


# Folders, files and their bytes ------------------------------------------------------------------

def test_missing_content_folder_is_a_clear_error(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "digest.yaml").write_text("search: false\n")
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    assert "content folder not found" in messages(result)[0]
    cli = run_cli("build", "--root", str(root))
    assert cli.returncode == 1 and "content folder not found" in cli.stderr


def test_empty_digest_builds_an_empty_home_page(tmp_path):
    root = write_digest(tmp_path / "d", {})
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError) and result.articles == 0
    home = (root / "site" / "index.html").read_text(encoding="utf-8")
    assert "0 articles" in home
    cli = run_cli("check", "--root", str(root))
    assert cli.returncode == 0 and "0 articles" in cli.stdout


def test_twenty_megabyte_abstract_is_cut_with_a_warning(tmp_path):
    abstract = ("word " * 4_000_000).strip()
    root = write_digest(tmp_path / "d", {"content/big.yaml": f"title: Big\npmid: 1\nabstract: {abstract}\n"})
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError)
    assert "content/big.yaml:3: warning: 'abstract' cut at 1,000,000 characters" in messages(result)
    assert (root / "site/articles/1/index.html").stat().st_size < 5_000_000


def test_hundred_thousand_authors_are_capped(tmp_path):
    authors = "".join(f"- Author{i} Name{i}\n" for i in range(100_000))
    root = write_digest(tmp_path / "d", {"content/many.yaml": f"title: Many\npmid: 1\nabstract: A.\nauthors:\n{authors}"})
    result, _ = timed_build(root, jobs=2)
    assert not isinstance(result, DigestError)
    assert f"content/many.yaml:4: warning: 'authors' has 100,000 entries; only the first {MAX_AUTHORS:,} are kept" \
        in messages(result)
    assert len(list((root / "site/authors").iterdir())) == MAX_AUTHORS + 1  # the terms and the index page


@pytest.mark.parametrize("text, line, words", [
    ("title: Deep\nabstract: " + "[" * 10_000 + "]" * 10_000 + "\n", 2, "nest"),
    ("title: Deep\nabstract:\n" + "".join("  " * i + "a:\n" for i in range(1, 80)) + "  " * 80 + "a: 1\n", None, "nested"),
])
def test_deeply_nested_yaml_is_refused(tmp_path, text, line, words):
    root = write_digest(tmp_path / "d", {"content/deep.yaml": text})
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    (problem,) = result.problems
    assert problem.path == "content/deep.yaml" and problem.line and words in problem.message
    if line:
        assert problem.line == line


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]" for i in range(1, 10)]
    root = write_digest(tmp_path / "d", {"content/bomb.yaml": "title: Bomb\npmid: 1\nx:\n" + "".join(
        f"  {line}\n" for line in lines)})
    result, elapsed = timed_build(root)
    assert isinstance(result, DigestError) and elapsed < 5
    (problem,) = result.problems
    assert problem.line and "aliases" in problem.message
    cli = run_cli("build", "--root", str(root))
    assert cli.returncode == 1 and "content/bomb.yaml:" in cli.stderr


def test_binary_files_are_skipped_with_a_warning(tmp_path):
    root = write_digest(tmp_path / "d", {
        "content/ok.yaml": RECORD.format(pmid=1),
        "content/figure.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 10,
        "content/paper.pdf": b"%PDF-1.4\n\x00\x01\x02" + os.urandom(2000),
        "content/utf16.yaml": "title: UTF-16\n".encode("utf-16-le"),
    })
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)  # the UTF-16 record is an error: it is a record, badly saved
    found = [m for m in messages(result) if ": warning: " not in m]
    assert found == ["content/utf16.yaml:1: is UTF-16 text or a binary file, not UTF-8 text "
                     "(save the file as UTF-8, or move it out of content/)"]
    (root / "content/utf16.yaml").unlink()
    result, _ = timed_build(root)
    assert sorted(messages(result)) == [
        "content/figure.png: warning: is a binary file, not a record (move it out of content/ or into static/)",
        "content/paper.pdf: warning: is a binary file, not a record (move it out of content/ or into static/)"]


def test_nul_bytes_and_control_characters(tmp_path):
    root = write_digest(tmp_path / "d", {
        "content/nul.yaml": b"title: Nul\x00 byte\npmid: 1\n",
        "content/ok.md": b"---\ntitle: Fine\npmid: 2\nabstract: A.\n---\nnotes with a \x00 and \x07 in them\n",
        "content/export.nbib": b"PMID- 3\nTI  - Con\x01trol \x0b title\nAB  - Text.\nFAU - Bad\x1fName, A\n\n",
    })
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    assert [m for m in messages(result) if ": warning: " not in m] == ["content/nul.yaml:1: invalid YAML: character #x0000 is not allowed "
                                "(remove control characters from the file)"]
    (root / "content/nul.yaml").unlink()
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError)
    assert set(messages(result)) >= {"content/ok.md:6: warning: control characters removed from 'notes'",
                                     "content/export.nbib:2: warning: control characters removed from 'title'"}
    import xml.etree.ElementTree as ET

    ET.parse(root / "site/feed.xml")  # control characters would make the feed unreadable XML
    assert "Control title" in (root / "site/articles/3/index.html").read_text(encoding="utf-8")


def test_invalid_utf8_names_the_line(tmp_path):
    root = write_digest(tmp_path / "d", {"content/latin1.yaml": b"title: ok\npmid: 1\nabstract: caf\xe9\n"})
    result, _ = timed_build(root)
    assert messages(result) == ["content/latin1.yaml:3: is not UTF-8 text (byte 0xe9) (save the file as UTF-8)"]


def test_one_gigabyte_sparse_file_is_refused_without_reading(tmp_path, monkeypatch):
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1)})
    with open(root / "content/huge.nbib", "wb") as stream:
        stream.truncate(1 << 30)
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        if str(file).endswith("huge.nbib"):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    result, elapsed = timed_build(root)
    assert elapsed < 5 and not opened
    assert messages(result) == ["content/huge.nbib: file is larger than 50 MB (1,024 MB) (split it)"]


def test_a_file_that_grows_between_stat_and_read_is_read_whole_up_to_the_limit(tmp_path, monkeypatch):
    """The reader asks for the size stat() gave and one byte more: a file written to meanwhile is
    still read to its end, and one that grew past the limit is refused as one that was too big."""
    import generator.load as load

    path = tmp_path / "growing.nbib"
    path.write_bytes(b"x" * 5000)
    real_stat = Path.stat

    def stat_before_it_grew(self, *args, **kwargs):
        info = real_stat(self, *args, **kwargs)
        if self.name != "growing.nbib":
            return info
        values = list(info)
        values[6] = 100  # st_size
        return os.stat_result(values)

    monkeypatch.setattr(Path, "stat", stat_before_it_grew)
    data, problems = load.read_content_bytes(path, "content/growing.nbib")
    assert data == b"x" * 5000 and problems == []
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 1000)
    data, problems = load.read_content_bytes(path, "content/growing.nbib")
    assert data is None and [p.message for p in problems] == ["file is larger than 0 MB"]


def test_symlink_loops_and_links_to_folders_are_skipped(tmp_path):
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1)})
    content = root / "content"
    os.symlink("loop2.yaml", content / "loop1.yaml")
    os.symlink("loop1.yaml", content / "loop2.yaml")
    (content / "sub").mkdir()
    os.symlink("..", content / "sub" / "up")
    os.symlink("missing.yaml", content / "broken.yaml")
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    assert sorted(messages(result)) == [
        "content/broken.yaml: is a broken symbolic link (to missing.yaml) (restore the file it points to, or remove the link)",
        "content/loop1.yaml: warning: is a symbolic link loop; skipped (remove the link)",
        "content/loop2.yaml: warning: is a symbolic link loop; skipped (remove the link)",
        "content/sub/up: warning: is a symbolic link to a folder; links to folders are not followed "
        "(copy the records into content/)"]
    (content / "broken.yaml").unlink()
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError) and result.articles == 1


def test_symlink_out_of_the_digest_is_not_read(tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("title: SECRET-TOKEN-123\npmid: 2\nabstract: x\n")
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1),
                                         "shared/inside.yaml": RECORD.format(pmid=3)})
    os.symlink(secret, root / "content/leak.yaml")
    os.symlink("../shared/inside.yaml", root / "content/inside.yaml")  # inside the digest: fine
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    (problem,) = result.problems
    assert problem.path == "content/leak.yaml" and "outside the digest" in problem.message
    cli = run_cli("check", "--root", str(root))
    assert cli.returncode == 1 and "SECRET-TOKEN-123" not in cli.stderr + cli.stdout
    (root / "content/leak.yaml").unlink()
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError) and result.articles == 2


def test_a_named_pipe_in_content_does_not_hang(tmp_path):
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1)})
    os.mkfifo(root / "content/pipe.yaml")
    result, elapsed = timed_build(root)
    assert elapsed < 5 and not isinstance(result, DigestError)
    assert "content/pipe.yaml: warning: is not a regular file (a pipe, socket or device); skipped " \
           "(move it out of content/)" in messages(result)


# The output folder --------------------------------------------------------------------------------

@contextmanager
def tmpfs(path: Path, options: str):
    """Mount a small tmpfs (root only); skip the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def many_records(count: int, size: int) -> dict[str, str]:
    return {f"content/r{i}.yaml": f"title: Record {i}\npmid: {i + 1}\nabstract: {'x' * size}\n" for i in range(count)}


def assert_site_untouched(site: Path, before: dict[str, bytes]) -> None:
    assert read_tree(site) == before


def test_full_disk_keeps_the_previous_site(tmp_path, monkeypatch):
    """Simulated: every write fails with ENOSPC while the new tree is made."""
    root = write_digest(tmp_path / "d", many_records(3, 10))
    timed_build(root)
    before = read_tree(root / "site")
    (root / "content/r0.yaml").write_text("title: Changed\npmid: 1\nabstract: y\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    import generator.build
    import generator.write

    monkeypatch.setattr(generator.write, "write_file", full)
    monkeypatch.setattr(generator.build, "write_file", full, raising=False)
    result, _ = timed_build(root, jobs=1)
    assert isinstance(result, DigestError)
    assert "cannot write the site: No space left on device" in messages(result)[0]
    assert_site_untouched(root / "site", before)
    monkeypatch.undo()
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError)
    assert "Changed" in (root / "site/articles/1/index.html").read_text(encoding="utf-8")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_really_full_disk_keeps_the_previous_site(tmp_path):
    """A 1 MB tmpfs: a small site fits, a bigger one does not; the small one stays, the CLI says why."""
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        root = write_digest(disk / "d", many_records(2, 10))
        cli = run_cli("build", "--root", str(root))
        assert cli.returncode == 0, cli.stderr
        before = read_tree(root / "site")
        write_digest(disk / "d", many_records(40, 10_000))
        cli = run_cli("build", "--root", str(root))
        assert cli.returncode == 1 and "No space left on device" in cli.stderr, cli.stderr
        assert_site_untouched(root / "site", before)


def test_read_only_output_parent_is_a_clear_error(tmp_path):
    root = write_digest(tmp_path / "d", many_records(2, 10), config="search: false\noutput_dir: out/site\n")
    if os.geteuid() == 0:
        context = tmpfs(root / "out", "size=1m,ro")
    else:
        (root / "out").mkdir()
        (root / "out").chmod(0o555)
        context = None
    try:
        if context is not None:
            context.__enter__()
        cli = run_cli("build", "--root", str(root))
        assert cli.returncode == 1
        assert re.search(r"out/site.*(Read-only file system|Permission denied)", cli.stderr), cli.stderr
    finally:
        if context is not None:
            context.__exit__(None, None, None)
        else:
            (root / "out").chmod(0o755)


def test_cli_never_shows_a_traceback_for_bad_content(tmp_path):
    root = write_digest(tmp_path / "d", {
        "content/a.yaml": "title: [unclosed\n", "content/b.md": "no front matter\n",
        "content/c.nbib": b"PMID- 1\nTI  - \xff\n\n", "content/d.json": "{\"not\": \"csl\"",
        "content/e.xml": "<PubmedArticleSet><PubmedArticle>", "content/f.ris": "TY  - JOUR\nTI  - x\n",
        "content/g.bib": "@article{x, title = {unclosed", "content/h.txt": "\x00\x01\x02",
    })
    for command in ("build", "check"):
        cli = run_cli(command, "--root", str(root))
        assert cli.returncode == 1
        assert all(re.match(r"^\S+(:\d+)?: ", line) or line.startswith(("Build failed", "digest check failed"))
                   for line in cli.stderr.splitlines()), cli.stderr


# Ids, slugs and paths -----------------------------------------------------------------------------

class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.hrefs += [v for k, v in attrs if k in ("href", "src") and v]


def site_paths(site: Path) -> list[str]:
    return [p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()]


def assert_paths_safe(site: Path) -> None:
    for path in site_paths(site):
        assert (site / path).resolve().is_relative_to(site.resolve())
        hidden = [part for part in PurePosixPath(path).parts if part.startswith(".")]
        assert not hidden or path in (".nojekyll", ".digest-tree"), path


def term_pages(site: Path, taxonomy: str) -> list[str]:
    return sorted(p.name for p in (site / taxonomy).iterdir() if p.is_dir())


def test_titles_that_slug_alike_get_distinct_stable_urls(tmp_path):
    files = {
        "content/a.yaml": "title: CAR-T in lupus\nabstract: x\n",
        "content/b.yaml": "title: CAR T in Lupus!\nabstract: x\n",
        "content/c.yaml": "title: \"???\"\nabstract: x\n",
        "content/d.yaml": "title: \"!!!\"\nabstract: x\n",
        "content/e.yaml": "title: 日本語の研究\nabstract: x\n",
        "content/f.yaml": "title: 中文研究\nabstract: x\n",
        "content/g.yaml": f"title: {'Long title ' * 30}one\nabstract: x\n",
        "content/h.yaml": f"title: {'Long title ' * 30}two\nabstract: x\n",
        "content/i.yaml": "title: TNF-α blockade\nabstract: x\n",
        "content/j.yaml": "title: TNF-β blockade\nabstract: x\n",
        "content/k.yaml": "title: ../../etc/passwd\nabstract: x\n",
        "content/l.yaml": "title: .hidden\nabstract: x\n",
    }
    root = write_digest(tmp_path / "d", files)
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError), messages(result)
    first = term_pages(root / "site", "articles")
    assert len(first) == len(files) and "car-t-in-lupus" in first and "car-t-in-lupus-2" in first
    assert "tnf-alpha-blockade" in first and "tnf-beta-blockade" in first and "etc-passwd" in first
    assert_paths_safe(root / "site")
    # Stable: another record added elsewhere changes no existing URL.
    (root / "content/0.yaml").write_text("title: CAR-T in lupus, again\nabstract: x\n")
    timed_build(root)
    assert set(first) <= set(term_pages(root / "site", "articles"))


def test_taxonomy_names_never_collide_or_escape(tmp_path):
    names = ["Müller J", "Muller J", "???", "!!!", "日本語", "中文", "..", ".hidden", "a" * 300 + "1", "a" * 300 + "2",
             "TNF-α", "TNF-β", "/etc/passwd", "CON", "index.html"]
    records = {f"content/r{i}.yaml": (f"title: Record {i}\npmid: {i + 1}\nabstract: x\nauthors: [{name!r}]\n"
                                      f"keywords: [{name!r}]\n").replace("'", "\"") for i, name in enumerate(names)}
    root = write_digest(tmp_path / "d", records)
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError), messages(result)
    site = root / "site"
    assert_paths_safe(site)
    topics = term_pages(site, "topics")
    # Names that differ only in accents are one term; every other name has its own page.
    assert len(topics) == len(names) - 1 and "muller-j" in topics
    assert all(len(slug) <= 80 for slug in topics)
    assert not any(slug in ("untitled", "", ".", "..") for slug in topics)
    muller = (site / "topics/muller-j/index.html").read_text(encoding="utf-8")
    assert muller.count('class="item-title"') == 2
    # Every article's author and keyword links lead to an existing page that lists the article.
    for i in range(len(names)):
        page = site / f"articles/{i + 1}/index.html"
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for href in parser.hrefs:
            if href.startswith(("../../topics/", "../../authors/")) and href.count("/") > 3:
                target = (page.parent / href).resolve() / "index.html"
                assert target.is_file(), href
                assert f"articles/{i + 1}/" in target.read_text(encoding="utf-8"), href


@pytest.mark.parametrize("bad_id", ["../../etc", ".hidden", "a/b", "", "a" * 101, "con\x00", "..", "a..b"])
def test_explicit_ids_cannot_escape(tmp_path, bad_id):
    root = write_digest(tmp_path / "d", {"content/a.yaml": f"title: A\nid: {bad_id!r}\nabstract: x\n".replace("'", "\"")})
    result, _ = timed_build(root)
    assert isinstance(result, DigestError) and "cannot be used in a URL" in messages(result)[0]
    assert messages(result)[0].startswith("content/a.yaml:2: ")


def test_ids_differing_only_in_case_are_refused_and_dois_that_slug_alike_are_distinct(tmp_path):
    root = write_digest(tmp_path / "d", {"content/a.yaml": "title: A\nid: Smith2020\nabstract: x\n",
                                         "content/b.yaml": "title: B\nid: smith2020\nabstract: x\n"})
    result, _ = timed_build(root)
    assert isinstance(result, DigestError)
    assert "content/b.yaml:1: id 'smith2020' is already used by content/a.yaml:1" in messages(result)[0]
    root = write_digest(tmp_path / "e", {"content/a.yaml": "title: A\ndoi: 10.1000/a_b\nabstract: x\n",
                                         "content/b.yaml": "title: B\ndoi: 10.1000/a-b\nabstract: x\n",
                                         "content/c.yaml": "title: C\ndoi: 10.1000/A.B\nabstract: x\n"})
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError), messages(result)
    ids = term_pages(root / "site", "articles")
    assert len(ids) == 3 and "doi-10.1000-a-b" in ids and "doi-10.1000-a.b" in ids


def test_slugify_is_distinct_for_lossy_names():
    assert slugify("TNF-α") != slugify("TNF-β")
    assert slugify("日本語") != slugify("中文") and slugify("???") != slugify("!!!")
    assert slugify("Müller J") == slugify("muller j") == "muller-j"
    assert slugify("T-Cells") == slugify("t cells")
    assert len(slugify("x" * 500)) <= 80 and slugify("x" * 500 + "a") != slugify("x" * 500 + "b")
    for name in ("..", ".hidden", "/", "\x00", " ", "a/../b"):
        slug = slugify(name)
        assert slug and re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug), (name, slug)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_an_ascii_name_folds_as_any_name_does(name: str) -> None:
    assert load_module._fold_ascii(name) == load_module._fold(name)


# digest check ----------------------------------------------------------------------------------------

CHECK_FILES = {
    "content/a.yaml": "title: A\npmid: 8\nauthors: [\"\", Jane Doe]\npublished: 2999\n",
    "content/c.nbib": ("PMID- 1234567890\nTI  - Long pmid\nAB  - x\nLID - 99.1234/x [doi]\n\n"
                       "PMID- 7\nTI  - Twice\nAB  - x\n\nPMID- 7\nTI  - Twice again\nAB  - x\n\n"),
    "content/n.yaml": "title: N\npmid: 5\nabstract: x\nnotices: [{kind: CommentIn}]\n",
    "content/s.yaml": "title: S\npmid: 6\nabstract: x\nsimilar: [{title: nowhere}, 99999999]\n",
    "content/dup1.yaml": "title: D\npmid: 9\nabstract: x\n",
    "content/dup2.md": "---\ntitle: D again\npmid: 9\n---\nnotes\n",
}
CHECK_ERRORS = [
    "content/dup2.md:2: PMID 9 is also recorded in content/dup1.yaml:1 (keep one native record per article; "
    "imported files may repeat it)",
    "content/n.yaml:4: 'notices' each notice needs a 'pmid', a 'doi' or a 'citation' saying what it points to",
    "content/s.yaml:4: 'similar' each similar article needs a 'pmid' or a 'doi'",
]
CHECK_WARNINGS = [
    "content/a.yaml:1: warning: no abstract (add 'abstract: ...', or a record with the same PMID that has one)",
    "content/a.yaml:3: warning: 1 author(s) with an empty name left out",
    "content/a.yaml:4: warning: 'published' 2999 is in the future (check the year)",
    "content/c.nbib:1: warning: PMID '1234567890' is not a PubMed id (PMIDs have 1 to 9 digits)",
    "content/c.nbib:4: warning: DOI '99.1234/x' does not look like a DOI (a DOI starts with '10.', "
    "e.g. 10.1016/j.coi.2025.102596)",
    "content/c.nbib:10: warning: PMID 7 is also in content/c.nbib:6; the two records were merged "
    "(remove one of the duplicates)",
]


def test_check_reports_every_problem_with_its_line(tmp_path):
    root = write_digest(tmp_path / "d", CHECK_FILES)
    cli = run_cli("check", "--root", str(root))
    lines = cli.stderr.splitlines()
    assert cli.returncode == 1
    assert [line for line in lines if line in CHECK_ERRORS] == CHECK_ERRORS
    assert [line for line in lines if line in CHECK_WARNINGS] == CHECK_WARNINGS
    assert lines[-1] == "digest check failed: 3 errors."
    # Fix the errors: warnings remain, exit 0; --strict makes them fail the check and the build.
    (root / "content/dup2.md").unlink()
    (root / "content/n.yaml").write_text("title: N\npmid: 5\nabstract: x\nnotices: [{kind: CommentIn, pmid: 4}]\n")
    (root / "content/s.yaml").write_text("title: S\npmid: 6\nabstract: x\nsimilar: [99999999]\n")  # outside: fine
    cli = run_cli("check", "--root", str(root))
    assert cli.returncode == 0 and cli.stderr.splitlines() == CHECK_WARNINGS
    assert run_cli("check", "--strict", "--root", str(root)).returncode == 1
    build_strict = run_cli("build", "--strict", "--root", str(root))
    assert build_strict.returncode == 1 and not (root / "site").exists()
    built = run_cli("build", "--root", str(root))
    assert built.returncode == 0 and all(w in built.stderr for w in CHECK_WARNINGS)


@pytest.fixture
def nested(tmp_path):
    """A digest with records 1,200 folders deep, removed bottom-up afterwards: shutil.rmtree (and so
    pytest's clean-up of old temporary folders) recurses and would fail on it."""
    root = nested_digest(tmp_path / "d", 1200)
    yield root
    remove_nested(root / "content")


def remove_nested(folder: Path) -> None:
    chain = [folder]
    while (chain[-1] / "a").is_dir():
        chain.append(chain[-1] / "a")
    for path in reversed(chain):
        for child in path.iterdir():
            if not child.is_dir():
                child.unlink()
        path.rmdir()


def nested_digest(root: Path, depth: int) -> Path:
    write_digest(root, {"content/ok.yaml": RECORD.format(pmid=1)})
    folder = root / "content"
    for _ in range(depth):  # deeper than Python's recursion limit: os.walk would fail
        folder = folder / "a"
        folder.mkdir()
    (folder / "deep.yaml").write_text(RECORD.format(pmid=2))
    return root


def test_deeply_nested_folders_are_read(nested):
    root = nested
    loaded = load_articles(root / "content", root)
    assert len(loaded.articles) == 2


def test_deeply_nested_folders_build(nested):
    root = nested
    result, _ = timed_build(root)
    assert not isinstance(result, DigestError) and result.articles == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_is_reported(tmp_path):
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1)})
    locked = root / "content/locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(DigestError) as excinfo:
            load_articles(root / "content", root)
        assert [p.format() for p in excinfo.value.problems] == [
            "content/locked: cannot read folder: Permission denied (check its permissions)"]
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("out", [".", "content", "notes", "..", "site-link"])
def test_output_folder_that_is_not_a_site_is_never_replaced(tmp_path, out):
    root = write_digest(tmp_path / "d", {"content/ok.yaml": RECORD.format(pmid=1), "notes/todo.txt": "mine\n",
                                         "site/index.html": "built before"})
    (root / "site/.nojekyll").write_text("")  # a site of an earlier version: replacing it is fine
    os.symlink("notes", root / "site-link")
    def files() -> dict[str, bytes]:
        return {k: v for k, v in read_tree(tmp_path).items() if "/.digest-cache/" not in k}

    before = files()
    cli = run_cli("build", "--root", str(root), "--out", out)
    assert cli.returncode == 1, cli.stderr
    assert re.search(r"refusing to replace it|not a folder|would overwrite the digest's own files", cli.stderr), cli.stderr
    assert files() == before
    assert run_cli("build", "--root", str(root)).returncode == 0  # into site/: fine
    assert (root / "site/articles/1/index.html").is_file() and (root / "content/ok.yaml").is_file()


PATHOLOGICAL_NOTES = {
    "unclosed brackets": "[" * 20_000, "unclosed links": "[a](" * 20_000, "unclosed images": "![a](" * 20_000,
    "unclosed tags": "<a " * 20_000, "comments": "<!--" * 20_000, "autolinks": "<http://a" * 20_000,
    "entities": "&lt;" * 40_000, "rules": "- - -\n" * 30_000, "underlines": "a\n=\n" * 40_000,
    "headings": "# a\n" * 40_000, "emphasis": "*_" * 50_000, "nested lists": "".join("    " * i + "- a\n" for i in range(2000)),
    "nested quotes": "".join("> " * i + "a\n" for i in range(2000)), "cdata": "<![CDATA[" * 20_000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL_NOTES))
def test_pathological_notes_render_in_bounded_time(name):
    from generator.markup import render_notes

    text = PATHOLOGICAL_NOTES[name]
    start = time.perf_counter()
    html = render_notes(text)
    assert time.perf_counter() - start < 5, name
    assert "<script" not in html and len(html) < 20 * len(text) + 1000


def test_ordinary_notes_still_render_as_markdown():
    from generator.markup import render_notes

    notes = ("# Why it matters\n\nA *randomised* trial (n = 240; p < 0.05) of [peanut](https://example.org/a) "
             "feeding.\n\n- first\n- second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode\n```\n" * 50)
    html = render_notes(notes)
    assert html.count("<h2>") == 50 and html.count("<em>randomised</em>") == 50 and "<table>" in html
