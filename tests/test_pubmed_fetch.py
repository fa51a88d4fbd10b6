"""`digest add` / `digest refresh` against a local server replaying recorded E-utilities responses.

The server (127.0.0.1, a free port) answers efetch, elink, esearch and esummary from the files in
`tests/fixtures/eutils/`, returning only the records asked for, logs every request with its arrival
time, and fails on demand. Tests that do not measure the rate give the client a fake clock, so
retries and the rate limiter never really sleep. Run this file directly to serve the fixtures by
hand: `python tests/test_pubmed_fetch.py [PORT]`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import cli, eutils, pubmed_fetch
from generator.eutils import EutilsClient, RateLimiter
from generator.load import load_articles
from generator.native import dump_record

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eutils"
TODAY = dt.date(2025, 3, 1)
EMAIL = "curator@example.org"


# The replay server


@dataclass
class Hit:
    """One request as the server saw it."""

    time: float
    method: str
    endpoint: str
    params: dict[str, list[str]]

    @property
    def ids(self) -> list[str]:
        return [i for value in self.params.get("id", []) for i in value.split(",") if i]

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class Failure:
    status: int
    when: Callable[[Hit], bool]
    times: int | None  # None: every matching request
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class FakeEutils:
    """Replays recorded E-utilities answers for the PMIDs asked for; records and can fail requests."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.efetch_file = "efetch_pubmed.xml"
        self.esearch_files = {"10.1000/demo.12345[doi]": "esearch_doi.json", "car-t lupus": "esearch_query.json"}
        self.failures: list[Failure] = []
        self.delay = 0.0

    def fail(self, status: int, endpoint: str | None = None, ids: str | None = None, times: int | None = None,
             headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        """Answer `status` to matching requests (`times` of them, or all)."""

        def when(hit: Hit) -> bool:
            return (endpoint is None or hit.endpoint == endpoint) and (ids is None or ids in hit.ids)

        self.failures.append(Failure(status, when, times, headers or {}, body))

    def of(self, endpoint: str) -> list[Hit]:
        return [h for h in self.hits if h.endpoint == endpoint]

    def answer(self, hit: Hit) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.hits.append(hit)
            for failure in self.failures:
                if failure.when(hit) and (failure.times is None or failure.times > 0):
                    if failure.times is not None:
                        failure.times -= 1
                    return failure.status, failure.headers, failure.body
        if self.delay:
            time.sleep(self.delay)
        if hit.endpoint == "efetch":
            return 200, {"Content-Type": "text/xml; charset=UTF-8"}, self._efetch(hit.ids)
        if hit.endpoint == "elink":
            return 200, {"Content-Type": "text/xml; charset=UTF-8"}, self._elink(hit.ids)
        if hit.endpoint == "esummary":
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, self._esummary(hit.ids)
        if hit.endpoint == "esearch":
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, self._esearch(hit)
        return 404, {}, b"no such endpoint"

    def _efetch(self, ids: list[str]) -> bytes:
        text = (FIXTURES / self.efetch_file).read_text(encoding="utf-8")
        head = text[: text.index("<PubmedArticleSet>")]
        articles = {}
        for chunk in re.findall(r"<PubmedArticle>.*?</PubmedArticle>", text, re.DOTALL):
            articles[re.search(r"<PMID[^>]*>(\d+)</PMID>", chunk).group(1)] = chunk
        body = "\n".join(articles[i] for i in ids if i in articles)
        return f"{head}<PubmedArticleSet>\n{body}\n</PubmedArticleSet>\n".encode("utf-8")

    def _elink(self, ids: list[str]) -> bytes:
        text = (FIXTURES / "elink_neighbor_score.xml").read_text(encoding="utf-8")
        head = text[: text.index("<eLinkResult>")]
        sets = {re.search(r"<Id>(\d+)</Id>", s).group(1): s
                for s in re.findall(r"<LinkSet>.*?</LinkSet>", text, re.DOTALL)}
        empty = "<LinkSet>\n<DbFrom>pubmed</DbFrom>\n<IdList><Id>{}</Id></IdList>\n</LinkSet>"
        body = "\n".join(sets.get(i, empty.format(i)) for i in ids)
        return f"{head}<eLinkResult>\n{body}\n</eLinkResult>\n".encode("utf-8")

    def _esummary(self, ids: list[str]) -> bytes:
        data = json.loads((FIXTURES / "esummary.json").read_text(encoding="utf-8"))
        result = {"uids": [i for i in ids if i in data["result"]]}
        result.update({i: data["result"][i] for i in result["uids"]})
        return json.dumps({"header": data["header"], "result": result}).encode("utf-8")

    def _esearch(self, hit: Hit) -> bytes:
        name = self.esearch_files.get(hit.param("term") or "", "esearch_empty.json")
        data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        retmax = int(hit.param("retmax") or 20)
        data["esearchresult"]["idlist"] = data["esearchresult"]["idlist"][:retmax]
        return json.dumps(data).encode("utf-8")

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                arrived = time.monotonic()
                parts = urllib.parse.urlsplit(self.path)
                params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
                if method == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length).decode("ascii")
                    for key, values in urllib.parse.parse_qs(body, keep_blank_values=True).items():
                        params.setdefault(key, []).extend(values)
                endpoint = parts.path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".fcgi")
                status, headers, body = fake.answer(Hit(arrived, method, endpoint, params))
                if status != 200 and not body:
                    self.send_error(status)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def log_message(self, *args) -> None:
                pass

        return Handler


def start_server(fake: FakeEutils, port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), fake.handler())
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def server():
    fake = FakeEutils()
    httpd = start_server(fake)
    yield fake
    httpd.shutdown()
    httpd.server_close()


class FakeClock:
    """A clock that only moves when something sleeps: retries and the rate limiter cost no time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "digest"
    (folder / "content").mkdir(parents=True)
    return folder


@pytest.fixture(autouse=True)
def no_ncbi_environment(monkeypatch):
    for name in ("NCBI_EMAIL", "NCBI_API_KEY", "DIGEST_EUTILS_URL"):
        monkeypatch.delenv(name, raising=False)


def make_client(fake: FakeEutils, root: Path, clock: FakeClock | None = None, **options) -> EutilsClient:
    clock = clock or FakeClock()
    return EutilsClient(fake.url, email=EMAIL, cache_dir=root / ".digest-cache" / "eutils", clock=clock,
                        sleep=clock.sleep, **options)


def parse(*argv: str):
    return cli.make_parser().parse_args(list(argv))


def add(fake: FakeEutils, root: Path, *ids: str, client: EutilsClient | None = None, batch_size: int = 200,
        extra: tuple[str, ...] = ()) -> int:
    args = parse("add", *ids, "--root", str(root), "--eutils-url", fake.url, *extra)
    return pubmed_fetch.run_add(args, client=client or make_client(fake, root), today=TODAY, batch_size=batch_size)


def refresh(fake: FakeEutils, root: Path, *extra: str, client: EutilsClient | None = None) -> int:
    args = parse("refresh", "--root", str(root), "--eutils-url", fake.url, *extra)
    return pubmed_fetch.run_refresh(args, client=client or make_client(fake, root))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def yaml_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def max_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)), default=0)


# Identifiers


@pytest.mark.parametrize("text, expected", [
    ("12345", ("pmid", "12345")),
    ("PMID: 40561659", ("pmid", "40561659")),
    ("https://pubmed.ncbi.nlm.nih.gov/40561659/", ("pmid", "40561659")),
    ("https://www.ncbi.nlm.nih.gov/pubmed/40561659", ("pmid", "40561659")),
    ("10.1016/j.coi.2025.102596", ("doi", "10.1016/j.coi.2025.102596")),
    ("https://doi.org/10.1016/j.coi.2025.102596", ("doi", "10.1016/j.coi.2025.102596")),
    ("doi:10.3389/fimmu.2024.1377777", ("doi", "10.3389/fimmu.2024.1377777")),
    ("lupus", None),
    ("https://example.org/12345", None),
])
def test_identifiers_are_pmids_dois_or_pubmed_urls(text, expected):
    assert pubmed_fetch.parse_identifier(text) == expected


# add


def test_add_writes_complete_records_with_similar_articles(server, root, capsys):
    code = add(server, root, "12345", "https://pubmed.ncbi.nlm.nih.gov/22222222/", "10.3389/fimmu.2024.1377777",
               "10.1000/demo.12345")
    # 10.3389/... is 33333333, but the fixture search knows only the DOI of 12345: reported, exit 1.
    assert code == 1
    out, err = capsys.readouterr()
    assert "DOI 10.3389/fimmu.2024.1377777 was not found in PubMed" in err
    assert "Added 2 records" in out
    content = root / "content"
    assert yaml_files(content) == ["12345.yaml", "22222222.yaml"]

    text = (content / "12345.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Fetched from PubMed by 'digest add'")
    record = yaml.safe_load(text)
    assert record["title"] == "CD19-directed CAR T cells in refractory systemic lupus erythematosus: a prospective cohort"
    assert record["doi"] == "10.1000/demo.12345" and record["pmcid"] == "PMC1012345"
    assert [s["label"] for s in record["abstract"]] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert record["abstract"][1]["html"].startswith("Twelve patients received a single infusion of 10<sup>6</sup>")
    assert record["authors"][0]["orcid"] == "0000-0002-1825-0097"
    assert record["journal_abbrev"] == "Curr Opin Immunol" and record["published"] == "2024-04"
    assert record["added"] == "2025-03-01"
    assert "notes" not in record and "tags" not in record

    similar = record["similar"]
    assert len(similar) == 10
    assert "12345" not in [s["pmid"] for s in similar]
    assert [s["pmid"] for s in similar][:3] == ["40755780", "40873568", "40562292"]
    assert "38000006" not in [s["pmid"] for s in similar]  # the 11th neighbour is cut
    scores = [s["score"] for s in similar]
    assert scores == sorted(scores, reverse=True) and scores[0] == 48213377
    first = similar[0]
    assert first["title"] == "CAR T-cells meet autoimmune neurological diseases: a new dawn for therapy"
    assert (first["journal"], first["date"], first["citation"]) == ("Front Immunol", "2025 Jul 18", "16:1604174")
    assert first["doi"] == "10.3389/fimmu.2025.1604174" and first["free_pmc"] and first["review"]
    assert similar[1]["title"] == "Engineered T cells for lupus: in vivo persistence and safety"
    assert similar[1]["citation"] == "12(2):e001411"
    in_vivo = next(s for s in similar if s["pmid"] == "39600090")
    assert "free_pmc" not in in_vivo  # PMC copy under embargo until 2099
    assert next(s for s in similar if s["pmid"] == "38000005")["review"]  # a systematic review

    retracted = load(content / "22222222.yaml")
    assert "Retracted Publication" in retracted["publication_types"]
    assert retracted["notices"] == [{"kind": "RetractionIn",
                                     "citation": "J Ex Immunol. 2014 Feb;13(2):200. doi: 10.5555/jei.2014.0200.",
                                     "pmid": "24555001", "doi": "10.5555/jei.2014.0200"}]
    assert [s["pmid"] for s in retracted["similar"]] == ["24555001", "30000001"]

    # The records load back as articles, the retraction flag intact.
    loaded = load_articles(content, root)
    by_id = {a.id: a for a in loaded.articles}
    assert by_id["22222222"].is_retracted and not by_id["12345"].is_retracted
    assert by_id["12345"].similar[0].score == 48213377.0

    # Batched: one efetch, one elink (one id= per PMID), one esummary for all neighbours.
    assert len(server.of("efetch")) == 1 and server.of("efetch")[0].ids == ["12345", "22222222"]
    assert server.of("elink")[0].params["id"] == ["12345", "22222222"]
    assert server.of("elink")[0].param("cmd") == "neighbor_score"
    assert server.of("elink")[0].param("linkname") == "pubmed_pubmed"
    assert len(server.of("esummary")) == 1 and len(server.of("esummary")[0].ids) == 12
    assert [h.param("term") for h in server.of("esearch")] == ["10.3389/fimmu.2024.1377777[doi]",
                                                               "10.1000/demo.12345[doi]"]


def test_add_a_search_keeps_at_most_max_results(server, root, capsys):
    assert add(server, root, extra=("--query", "car-t lupus", "--max", "2")) == 0
    assert yaml_files(root / "content") == ["12345.yaml", "33333333.yaml"]
    (search,) = server.of("esearch")
    assert search.param("term") == "car-t lupus" and search.param("retmax") == "2"
    assert "Added 2 records" in capsys.readouterr().out


def test_add_into_another_folder_and_long_id_lists_are_posted(server, root):
    client = make_client(server, root, max_get_length=40)
    assert add(server, root, "12345", "22222222", "33333333", client=client, extra=("--to", str(root / "new"))) == 0
    assert yaml_files(root / "new") == ["12345.yaml", "22222222.yaml", "33333333.yaml"]
    assert yaml_files(root / "content") == []
    (fetch,) = server.of("efetch")
    assert fetch.method == "POST" and fetch.ids == ["12345", "22222222", "33333333"]
    assert fetch.param("tool") == "review-digest" and fetch.param("email") == EMAIL


def test_unknown_pmid_is_reported_and_nothing_is_written(server, root, capsys):
    assert add(server, root, "99999999") == 1
    assert "PMID 99999999 was not found in PubMed" in capsys.readouterr().err
    assert yaml_files(root / "content") == []


def test_bad_identifiers_are_refused_before_any_request(server, root, capsys):
    code = cli.main(["add", "12345", "lupus", "--root", str(root), "--eutils-url", server.url])
    assert code == 1
    assert "digest add: not a PMID, DOI or PubMed URL: 'lupus'" in capsys.readouterr().err
    assert server.hits == []


def test_records_already_in_the_folder_are_skipped_without_requests(server, root, capsys):
    (root / "content" / "my-notes.yaml").write_text("pmid: 22222222\ntitle: Mine\nnotes: keep me\n", encoding="utf-8")
    assert add(server, root, "12345", "22222222") == 0
    assert yaml_files(root / "content") == ["12345.yaml", "my-notes.yaml"]
    assert server.of("efetch")[0].ids == ["12345"]
    before = len(server.hits)
    assert add(server, root, "12345", "22222222") == 0
    assert len(server.hits) == before  # nothing left to fetch
    assert "0 records" in capsys.readouterr().out.splitlines()[-1]


def test_responses_are_cached_and_reused(server, root):
    assert add(server, root, "12345") == 0
    (root / "content" / "12345.yaml").unlink()
    before = len(server.hits)
    assert add(server, root, "12345") == 0
    assert len(server.hits) == before  # efetch, elink and esummary all came from .digest-cache/eutils
    assert (root / "content" / "12345.yaml").is_file()
    assert len(list((root / ".digest-cache" / "eutils").iterdir())) == 3


# Politeness: identification and rate


def test_rate_without_a_key_is_at_most_3_per_second_and_requests_are_identified(server, root, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    args = parse("add", "12345", "22222222", "33333333", "--root", str(root), "--eutils-url", server.url, "-q")
    started = time.monotonic()
    assert pubmed_fetch.run_add(args, today=TODAY, batch_size=1) == 0  # the real client, real clock
    elapsed = time.monotonic() - started
    assert len(server.hits) == 9  # efetch, elink and esummary for each batch of one
    assert max_in_one_second([h.time for h in server.hits]) <= 3
    assert elapsed >= 2.0  # 9 requests at 3 a second need two full waits
    for hit in server.hits:
        assert hit.param("tool") == "review-digest" and hit.param("email") == EMAIL
        assert hit.param("api_key") is None


def test_rate_with_an_api_key_is_at_most_10_per_second(server, root, monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", "k3y")
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    client = pubmed_fetch.make_client(parse("add", "--eutils-url", server.url), root)
    client.cache.folder = None  # every search goes to the server
    for number in range(21):
        client.esearch(f"query {number}", retmax=1)
    times = [h.time for h in server.hits]
    assert len(times) == 21
    assert max_in_one_second(times) <= 10
    assert max_in_one_second(times) >= 5  # and a key does allow more than 3
    assert all(h.param("api_key") == "k3y" and h.param("tool") == "review-digest" for h in server.hits)


def test_rate_limiter_counts_starts_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(20):
        limiter.wait()
        starts.append(clock())
    assert max_in_one_second(starts) == 3
    assert starts[3] - starts[0] >= 1.0
    clock.now += 60  # after a pause the next three go at once
    for _ in range(3):
        limiter.wait()
    assert len(clock.sleeps) == 6


# Failures: retries, give-up, offline, resume


def test_429_is_retried_after_the_time_retry_after_asks(server, root):
    server.fail(429, endpoint="efetch", times=1, headers={"Retry-After": "2", "Content-Type": "application/json"},
                body=b'{"error":"API rate limit exceeded","count":"11"}')
    clock = FakeClock()
    assert add(server, root, "12345", client=make_client(server, root, clock)) == 0
    assert len(server.of("efetch")) == 2
    assert 2.0 in clock.sleeps
    assert (root / "content" / "12345.yaml").is_file()


def test_500_is_retried_with_exponential_backoff(server, root):
    server.fail(500, endpoint="elink", times=2)
    clock = FakeClock()
    assert add(server, root, "12345", client=make_client(server, root, clock)) == 0
    assert len(server.of("elink")) == 3
    assert clock.sleeps[:2] == [1.0, 2.0]
    assert (root / "content" / "12345.yaml").is_file()


def test_gives_up_after_the_limit_with_one_clear_line_and_no_files(server, root, monkeypatch, capsys):
    server.fail(500, endpoint="efetch")
    monkeypatch.setattr(eutils, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setenv("NCBI_API_KEY", "k3y")  # 10 a second: the four tries need no rate wait
    code = cli.main(["add", "12345", "22222222", "--root", str(root), "--eutils-url", server.url])
    assert code == 1
    assert len(server.of("efetch")) == eutils.MAX_TRIES == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"digest add: {server.url}efetch.fcgi answered HTTP 500 Internal Server Error (4 times); "
                       f"the service is failing; try again later")
    assert "k3y" not in "\n".join(err)
    assert list((root / "content").iterdir()) == []  # no records, no temporary files


def test_an_unreachable_service_is_one_line_naming_the_url(root, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    code = cli.main(["add", "12345", "--root", str(root), "--eutils-url", url, "-q"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"digest add: cannot reach {url}efetch.fcgi: ")
    assert err.endswith("; check the connection or set --eutils-url") and "\n" not in err
    assert list((root / "content").iterdir()) == []


def test_every_request_has_a_timeout(server, root):
    server.delay = 0.5
    client = make_client(server, root, timeout=0.1, max_tries=2)
    args = parse("add", "12345", "--root", str(root), "--eutils-url", server.url)
    assert pubmed_fetch.run_add(args, client=client, today=TODAY) == 1
    assert len(server.of("efetch")) == 2
    assert list((root / "content").iterdir()) == []


def test_garbled_answers_are_retried_then_reported(server, root, capsys):
    server.fail(200, endpoint="efetch", headers={"Content-Type": "text/html"}, body=b"<html>Service busy</html>")
    assert add(server, root, "12345") == 1
    assert len(server.of("efetch")) == 4
    assert "efetch.fcgi sent an unreadable answer 4 times" in capsys.readouterr().err
    assert not (root / ".digest-cache" / "eutils").exists() or not any(
        p.name.startswith("efetch") for p in (root / ".digest-cache" / "eutils").iterdir())


def test_an_interrupted_run_resumes_fetching_only_what_is_missing(server, root, capsys):
    server.fail(500, endpoint="efetch", ids="33333333")
    assert add(server, root, "12345", "22222222", "33333333", batch_size=1) == 1
    err = capsys.readouterr().err
    assert "2 complete records written before the failure; run the same command again" in err
    assert yaml_files(root / "content") == ["12345.yaml", "22222222.yaml"]
    server.failures.clear()
    server.hits.clear()
    assert add(server, root, "12345", "22222222", "33333333", batch_size=1) == 0
    assert yaml_files(root / "content") == ["12345.yaml", "22222222.yaml", "33333333.yaml"]
    assert {tuple(h.ids) for h in server.of("efetch")} == {("33333333",)}
    assert {tuple(h.ids) for h in server.of("elink")} == {("33333333",)}
    assert load(root / "content" / "33333333.yaml")["title"].startswith("Anti-BCMA CAR T cells")


# refresh


CURATOR_BLOCK = """\
# My reading notes, kept by refresh.
tags: [myasthenia, car-t]
rating: 4
verdict: Small series, but the first in MG.
journal_club: '2025-03-12'
notes: |
  Read with the BCMA review.

  - three patients only
  - follow-up **one year**
"""


def test_refresh_reports_a_new_retraction_first_and_keeps_curator_fields(server, root, capsys):
    assert add(server, root, "12345", "22222222", "33333333") == 0
    path = root / "content" / "33333333.yaml"
    path.write_text(path.read_text(encoding="utf-8") + CURATOR_BLOCK, encoding="utf-8")
    before = load(path)
    unchanged_before = (root / "content" / "22222222.yaml").read_bytes()
    capsys.readouterr()
    server.efetch_file = "efetch_pubmed_updated.xml"
    fetches = len(server.of("efetch"))

    assert refresh(server, root) == 0
    assert len(server.of("efetch")) == fetches + 1  # refresh bypasses the efetch cache
    report = capsys.readouterr().out.splitlines()
    assert report[0] == "NEW RETRACTIONS (1):"
    assert report[1].startswith('  content/33333333.yaml: PMID 33333333 "Anti-BCMA CAR T cells')
    assert report[2] == ("    Retraction in: Front Immunol. 2025 Jan 10;16:1500001. "
                         "doi: 10.3389/fimmu.2025.1500001. PMID 39888888")
    assert report[3] == "NEW ERRATA AND EXPRESSIONS OF CONCERN (1):"
    assert report[4].startswith("  content/12345.yaml: PMID 12345")
    assert report[5].startswith("    Erratum in: Curr Opin Immunol. 2024 Aug;89:102455.")
    assert report[6] == "Changed (2):"
    assert report[7] == "  content/12345.yaml: PMID 12345: notices"
    assert report[8] == "  content/33333333.yaml: PMID 33333333: publication_types, status, mesh_terms, notices, history"
    assert report[9:] == ["Unchanged: 1 record.", "Updated 2 files."]

    text = path.read_text(encoding="utf-8")
    assert text.endswith(CURATOR_BLOCK)  # the curator's lines, byte for byte
    after = load(path)
    for key in ("tags", "rating", "verdict", "journal_club", "notes", "added", "similar", "title"):
        assert after[key] == before[key]
    assert after["publication_types"] == ["Journal Article", "Retracted Publication"]
    assert after["notices"][0]["kind"] == "RetractionIn" and after["status"] == "MEDLINE"
    assert (root / "content" / "22222222.yaml").read_bytes() == unchanged_before
    articles = {a.id: a for a in load_articles(root / "content", root).articles}
    assert articles["33333333"].is_retracted and articles["33333333"].notes.startswith("Read with the BCMA review.")
    assert articles["12345"].has_erratum

    # A second refresh finds nothing new and writes nothing.
    assert refresh(server, root) == 0
    assert capsys.readouterr().out.splitlines() == ["Unchanged: 3 records.", "Updated 0 files."]
    assert path.read_text(encoding="utf-8") == text


def test_refresh_dry_run_reports_without_writing(server, root, capsys):
    assert add(server, root, "33333333") == 0
    path = root / "content" / "33333333.yaml"
    original = path.read_bytes()
    server.efetch_file = "efetch_pubmed_updated.xml"
    capsys.readouterr()
    assert refresh(server, root, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith("NEW RETRACTIONS (1):") and out.rstrip().endswith("Dry run: nothing was written.")
    assert path.read_bytes() == original


def test_refresh_edits_hand_written_records_in_place(server, root, capsys):
    content = root / "content"
    hand = """\
# Curated by hand; a comment that must survive.
pmid: 33333333
title: My own short title
date: 2024  # an alias of 'published'
tags:
  - mg

notes: |
  Keep   this   spacing.
"""
    (content / "mg.yaml").write_text(hand, encoding="utf-8")
    markdown = "---\npmid: 12345\ntitle: Lupus cohort\nrating: 5\n---\n\nMy **Markdown** notes.\n"
    (content / "lupus.md").write_text(markdown, encoding="utf-8")
    assert refresh(server, root) == 0
    out = capsys.readouterr().out
    assert "Updated 2 files." in out

    text = (content / "mg.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Curated by hand; a comment that must survive.\npmid: 33333333\ndoi: 10.3389/")
    assert "\ntitle: 'Anti-BCMA CAR T cells in refractory myasthenia gravis: a case series'\n" in text
    # PubMed's date means the same as the curator's alias 'date: 2024': that line is left alone.
    assert "\ndate: 2024  # an alias of 'published'\n" in text and "\npublished:" not in text
    assert text.endswith("tags:\n  - mg\n\nnotes: |\n  Keep   this   spacing.\n")
    record = load(content / "mg.yaml")
    assert record["date"] == 2024 and record["journal"] == "Frontiers in immunology"
    assert record["abstract"].startswith("Three patients") and len(record["similar"]) == 2

    md = (content / "lupus.md").read_text(encoding="utf-8")
    assert md.endswith("rating: 5\n---\n\nMy **Markdown** notes.\n")
    articles = {a.id: a for a in load_articles(content, root).articles}
    assert articles["12345"].rating == 5 and articles["12345"].notes == "My **Markdown** notes."
    assert articles["12345"].title.startswith("CD19-directed CAR T cells")
    assert articles["33333333"].tags == ("mg",) and articles["33333333"].notes == "Keep   this   spacing."


def test_refresh_failure_changes_nothing(server, root, capsys):
    assert add(server, root, "12345") == 0
    original = (root / "content" / "12345.yaml").read_bytes()
    server.efetch_file = "efetch_pubmed_updated.xml"
    server.fail(503, endpoint="efetch")
    assert refresh(server, root) == 1
    err = capsys.readouterr().err
    assert "efetch.fcgi answered HTTP 503" in err and "Nothing was changed." in err
    assert (root / "content" / "12345.yaml").read_bytes() == original


@pytest.mark.parametrize("text, kept", [
    ("pmid: 1\r\ntitle: Old\r\nnotes: |\r\n  a\r\n  b\r\n", "notes: |\r\n  a\r\n  b\r\n"),
    ("pmid: 1\ntitle: Old\nnotes: mine", "notes: mine"),
    ("pmid: 1\ntitle: >-\n  Old folded\n  title\n# about notes\nnotes: |+\n  keep\n\n\ntags: [a]\n",
     "# about notes\nnotes: |+\n  keep\n\n\ntags: [a]\n"),
    ("pmid: 1\ntitle: Old\ntitle: Older\nrating: 3\n", "rating: 3\n"),
    ("pmid: 1\nmesh: [A, B]\ntitle: 'Old'   # trailing comment\nnotes: \"x\\ny\"\n", "notes: \"x\\ny\"\n"),
])
def test_edit_rewrites_only_pubmed_keys(text, kept):
    raw = yaml.safe_load(text)
    new = pubmed_fetch.edit_record_text(text, raw, {"title": "New: title", "mesh_terms": ["X/*y"]}, set())
    assert kept in new
    data = yaml.safe_load(new)
    assert data["title"] == "New: title" and data["mesh_terms"] == ["X/*y"] and "mesh" not in data
    assert {k: v for k, v in data.items() if k not in ("title", "mesh_terms")} == {
        k: v for k, v in raw.items() if k not in ("title", "mesh")}


@settings(max_examples=60, deadline=None)
@given(notes=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=80),
       tags=st.lists(st.text(alphabet="abcxyz -", min_size=1, max_size=8), max_size=3))
def test_curator_values_survive_any_edit(notes, tags):
    text = dump_record({"pmid": "1", "title": "Old", "tags": tags, "notes": notes, "rating": 2})
    raw = yaml.safe_load(text)
    new = pubmed_fetch.edit_record_text(text, raw, {"title": "New", "notices": [{"kind": "RetractionIn"}]}, set())
    data = yaml.safe_load(new)
    assert (data["notes"], data["tags"], data["rating"]) == (raw["notes"], raw["tags"], 2)
    assert data["notices"] == [{"kind": "RetractionIn"}] and data["title"] == "New"


def test_refresh_updates_each_record_of_a_list_file(server, root, capsys):
    (root / "content" / "two.yaml").write_text(
        "- pmid: 12345\n  title: One\n  notes: first\n- pmid: 22222222\n  title: Two\n  rating: 1\n", encoding="utf-8")
    assert refresh(server, root) == 0
    items = load(root / "content" / "two.yaml")
    assert items[0]["notes"] == "first" and items[0]["title"].startswith("CD19-directed")
    assert items[1]["rating"] == 1 and "Retracted Publication" in items[1]["publication_types"]
    assert capsys.readouterr().out.startswith("NEW RETRACTIONS (1):\n  content/two.yaml: PMID 22222222")


def test_edit_falls_back_to_a_whole_record_when_text_cannot_be_edited():
    text = "{pmid: 1, title: Old, notes: 'mine'}\n"
    raw = {"pmid": 1, "title": "Old", "notes": "mine"}
    new = pubmed_fetch.edit_record_text(text, raw, {"title": "New", "doi": "10.1000/x"}, set())
    assert yaml.safe_load(new) == {"pmid": 1, "doi": "10.1000/x", "title": "New", "notes": "mine"}


# Progress


def test_progress_only_on_a_terminal():
    class Terminal:
        def __init__(self, tty: bool):
            self.tty, self.text = tty, ""

        def isatty(self) -> bool:
            return self.tty

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    for tty, quiet, shown in ((True, False, True), (False, False, False), (True, True, False)):
        stream = Terminal(tty)
        progress = pubmed_fetch.Progress(quiet, stream)
        progress.show("Fetching records 1-2 of 2...")
        progress.clear()
        assert ("Fetching records" in stream.text) is shown


def test_no_progress_noise_when_stderr_is_not_a_terminal(server, root, capsys):
    assert add(server, root, "12345") == 0
    assert capsys.readouterr().err == ""


if __name__ == "__main__":  # serve the fixtures by hand: digest add 12345 --eutils-url http://127.0.0.1:PORT/
    fake = FakeEutils()
    start_server(fake, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"Serving recorded E-utilities answers at {fake.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
