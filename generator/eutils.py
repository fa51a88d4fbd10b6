"""A small client for NCBI E-utilities: identified, rate-limited, patient with failures, cached.

NCBI's usage policy (FORMATS.md 1c): send `tool` and `email` with every request, at most 3 requests a
second without an API key and 10 with one. Over-limit requests get HTTP 429; the service also has
bad moments (5xx, timeouts), so failed requests are retried with exponential backoff, a few times.

Responses are cached as raw bytes in `.digest-cache/eutils/`, one file per request, named by a hash
of the base URL, the endpoint and the parameters (never the key or email), so an interrupted run
that is started again re-uses what it already fetched.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from generator import __version__

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
TOOL = "review-digest"
RATE_WITHOUT_KEY = 3  # requests per second (NCBI policy)
RATE_WITH_KEY = 10
RATE_MARGIN_SECONDS = 0.1  # the window is 1.1 s, so network jitter cannot push 4 starts into one second
TIMEOUT_SECONDS = 30.0
MAX_TRIES = 4
BACKOFF_SECONDS = 1.0  # the first retry waits this long, then 2x, 4x...
MAX_WAIT_SECONDS = 120.0  # a Retry-After longer than this is not waited for
MAX_GET_LENGTH = 1800  # longer query strings are sent as POST (NCBI: "use POST for long ID lists")
# How long cached responses are used. Search results and records change; neighbour lists and
# summaries of other articles change slowly. `refresh` bypasses the efetch cache altogether.
CACHE_MAX_AGE = {"esearch": 86_400.0, "efetch": 7 * 86_400.0, "elink": 30 * 86_400.0, "esummary": 30 * 86_400.0}
# Parameters that identify the caller, not the request: left out of cache keys (and never shown).
_PRIVATE_PARAMS = ("api_key", "email", "tool")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

Params = Sequence[tuple[str, str]]


class EutilsError(Exception):
    """The service could not give an answer: the message is one line saying what to do."""


class _Retry(Exception):
    """A failure worth another try: 429, 5xx, a timeout or a dropped connection."""

    def __init__(self, reason: str, wait: float | None, status: int | None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.status = status


class _Unreadable(ValueError):
    """A response that does not parse: worth another try (NCBI sometimes sends truncated answers)."""


class RateLimiter:
    """Allow at most `limit` request starts in any window of `period` seconds.

    Measured on start times, so a slow response does not let the next ones bunch up. `clock` and
    `sleep` are injectable so tests need not wait.
    """

    def __init__(self, limit: int, period: float = 1.0 + RATE_MARGIN_SECONDS,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.limit = max(1, limit)
        self.period = period
        self.clock = clock
        self.sleep = sleep
        self.starts: deque[float] = deque(maxlen=self.limit)

    def wait(self) -> None:
        """Block until one more request may start, and record its start."""
        while len(self.starts) == self.limit:
            delay = self.starts[0] + self.period - self.clock()
            if delay <= 0:
                break
            self.sleep(delay)
        self.starts.append(self.clock())


class ResponseCache:
    """Raw responses on disk, one file per request; best effort (a cache that cannot write is skipped)."""

    def __init__(self, folder: Path | None, now: Callable[[], float] = time.time):
        self.folder = folder
        self.now = now

    @staticmethod
    def key(base_url: str, endpoint: str, params: Params) -> str:
        public = sorted((k, v) for k, v in params if k not in _PRIVATE_PARAMS)
        blob = json.dumps([base_url, endpoint, public], separators=(",", ":"))
        return f"{endpoint}-{hashlib.sha256(blob.encode('utf-8')).hexdigest()[:40]}"

    def get(self, key: str, max_age: float | None) -> bytes | None:
        if self.folder is None:
            return None
        path = self.folder / key
        try:
            if max_age is not None and self.now() - path.stat().st_mtime > max_age:
                return None
            return path.read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.replace(temporary, self.folder / key)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            pass

    def drop(self, key: str) -> None:
        if self.folder is not None:
            (self.folder / key).unlink(missing_ok=True)


@dataclass(frozen=True)
class Neighbour:
    """One of PubMed's similar articles for a PMID, with elink's neighbour score."""

    pmid: str
    score: float


class EutilsClient:
    """Talk to E-utilities: esearch, efetch, elink (neighbour scores) and esummary."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, *, email: str = "", api_key: str = "",
                 cache_dir: Path | None = None, timeout: float = TIMEOUT_SECONDS, max_tries: int = MAX_TRIES,
                 backoff: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rate: int | None = None,
                 max_get_length: int = MAX_GET_LENGTH):
        self.base_url = normalize_base_url(base_url)
        self.email = email.strip()
        self.api_key = api_key.strip()
        self.cache = ResponseCache(cache_dir)
        self.timeout = timeout
        self.max_tries = max(1, max_tries)
        self.backoff = BACKOFF_SECONDS if backoff is None else backoff
        self.sleep = sleep
        self.limiter = RateLimiter(rate or (RATE_WITH_KEY if self.api_key else RATE_WITHOUT_KEY),
                                   clock=clock, sleep=sleep)
        self.max_get_length = max_get_length
        self.requests = 0  # requests sent over the network, retries included

    # Endpoints

    def esearch(self, term: str, retmax: int) -> list[str]:
        """Return the PMIDs a PubMed search finds, best match first, at most `retmax`."""
        params = [("db", "pubmed"), ("term", term), ("retmax", str(retmax)), ("retmode", "json"),
                  ("sort", "relevance")]
        return self._call("esearch", params, _parse_esearch)

    def efetch(self, pmids: Sequence[str], use_cache: bool = True) -> str:
        """Return the PubMed XML (a PubmedArticleSet) for the PMIDs, as text."""
        params = [("db", "pubmed"), ("retmode", "xml"), ("id", ",".join(pmids))]
        return self._call("efetch", params, _parse_efetch, use_cache=use_cache)

    def neighbours(self, pmids: Sequence[str], use_cache: bool = True) -> dict[str, list[Neighbour]]:
        """Return PubMed's similar articles (linkname pubmed_pubmed) for each PMID, best score first.

        One `id=` parameter per PMID, so elink answers with one LinkSet each (`id=A,B` would merge them).
        """
        params = [("dbfrom", "pubmed"), ("db", "pubmed"), ("linkname", "pubmed_pubmed"),
                  ("cmd", "neighbor_score")] + [("id", pmid) for pmid in pmids]
        return self._call("elink", params, _parse_elink, use_cache=use_cache)

    def summaries(self, pmids: Sequence[str]) -> dict[str, dict]:
        """Return esummary's document summary (JSON) for each PMID it knows."""
        params = [("db", "pubmed"), ("retmode", "json"), ("id", ",".join(pmids))]
        return self._call("esummary", params, _parse_esummary)

    # Plumbing

    def endpoint_url(self, endpoint: str) -> str:
        return urllib.parse.urljoin(self.base_url, f"{endpoint}.fcgi")

    def _call(self, endpoint: str, params: Params, parse: Callable[[bytes], object], use_cache: bool = True):
        """Return the parsed answer: from the cache, else from the service, retrying what may pass."""
        key = self.cache.key(self.base_url, endpoint, params)
        if use_cache:
            cached = self.cache.get(key, CACHE_MAX_AGE.get(endpoint))
            if cached is not None:
                try:
                    return parse(cached)
                except (_Unreadable, EutilsError):
                    self.cache.drop(key)
        url = self.endpoint_url(endpoint)
        request = self._request(url, params)
        for attempt in range(1, self.max_tries + 1):
            try:
                data = self._send(url, request)
                try:
                    value = parse(data)
                except EutilsError as exc:  # an error NCBI reports inside a 200 answer
                    raise EutilsError(f"{url}: {exc}") from None
            except _Retry as retry:
                if attempt == self.max_tries:
                    raise EutilsError(self._give_up_message(url, retry)) from None
                if retry.wait is not None and retry.wait > MAX_WAIT_SECONDS:
                    raise EutilsError(f"{url} answered {retry.reason} and asked to wait {retry.wait:.0f} s; "
                                      f"try again later") from None
                self.sleep(self._backoff(attempt) if retry.wait is None else retry.wait)
                continue
            except _Unreadable as exc:
                if attempt == self.max_tries:
                    raise EutilsError(f"{url} sent an unreadable answer {self._tries()} ({exc}); "
                                      f"try again later") from None
                self.sleep(self._backoff(attempt))
                continue
            self.cache.put(key, data)
            return value
        raise AssertionError("unreachable")

    def _request(self, url: str, params: Params) -> urllib.request.Request:
        """Build the request: identified with tool, email and key; POST when the query is long."""
        full = list(params) + [("tool", TOOL)]
        if self.email:
            full.append(("email", self.email))
        if self.api_key:
            full.append(("api_key", self.api_key))
        query = urllib.parse.urlencode(full)
        headers = {"User-Agent": f"review-digest/{__version__}"}
        if len(query) > self.max_get_length:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return urllib.request.Request(url, data=query.encode("ascii"), method="POST", headers=headers)
        return urllib.request.Request(f"{url}?{query}", headers=headers)

    def _send(self, url: str, request: urllib.request.Request) -> bytes:
        """Send one request (after the rate limiter allows it); return the body of a 200."""
        self.limiter.wait()
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            reason = f"HTTP {status} {exc.reason or ''}".strip() + _error_detail(exc)
            exc.close()
            if status in _RETRY_STATUS:
                raise _Retry(reason, wait, status) from None
            hint = "check --eutils-url" if status == 404 else "check the identifiers and the query"
            raise EutilsError(f"{url} answered {reason}; {hint}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = _network_reason(exc)
            if _is_permanent(exc):
                raise EutilsError(f"cannot reach {url}: {reason}; check the connection "
                                  f"or set --eutils-url") from None
            raise _Retry(reason, None, None) from None

    def _tries(self) -> str:
        return f"{self.max_tries} {'time' if self.max_tries == 1 else 'times'}"

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2 ** (attempt - 1), MAX_WAIT_SECONDS)

    def _give_up_message(self, url: str, retry: "_Retry") -> str:
        if retry.status is None:
            return (f"cannot reach {url}: {retry.reason} ({self._tries()}); check the connection "
                    f"or set --eutils-url")
        if retry.status == 429:
            hint = "NCBI is limiting requests; set NCBI_API_KEY or try again later"
        else:
            hint = "the service is failing; try again later"
        return f"{url} answered {retry.reason} ({self._tries()}); {hint}"


def normalize_base_url(url: str) -> str:
    """Return the base URL with a trailing slash; raise EutilsError when it is not http(s)."""
    url = (url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EutilsError(f"the E-utilities URL must start with http:// or https://, got {url!r}")
    return url if url.endswith("/") else url + "/"


def chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    """Yield successive slices of at most `size` items."""
    for start in range(0, len(items), max(1, size)):
        yield list(items[start:start + max(1, size)])


def _retry_after(value: str | None) -> float | None:
    """Return the seconds a Retry-After header asks for (a number or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """Return NCBI's own error text from a JSON error body (e.g. 'API rate limit exceeded'), if any."""
    try:
        body = exc.read(2000)
        data = json.loads(body.decode("utf-8", "replace"))
    except Exception:  # the body is only a nicety for the message
        return ""
    message = data.get("error") if isinstance(data, dict) else None
    return f" ({' '.join(str(message).split())[:200]})" if message else ""


def _network_reason(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = " ".join(str(reason).split())
    return text or type(reason).__name__


def _is_permanent(exc: BaseException) -> bool:
    """Return True for failures a retry cannot fix: no such host, nobody listening."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError))


# Parsers: raise _Unreadable for a garbled answer, EutilsError for an error NCBI reports in-band.

def _json(data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Unreadable(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _Unreadable("not a JSON object")
    if value.get("error"):
        raise EutilsError(" ".join(str(value["error"]).split())[:200])
    return value


def _parse_esearch(data: bytes) -> list[str]:
    result = _json(data).get("esearchresult")
    if not isinstance(result, dict):
        raise _Unreadable("no esearchresult")
    if result.get("ERROR"):
        raise EutilsError(f"search failed: {' '.join(str(result['ERROR']).split())[:200]}")
    ids = result.get("idlist")
    if not isinstance(ids, list):
        raise _Unreadable("no idlist")
    return [str(i).strip() for i in ids if str(i).strip().isdigit()]


def _parse_efetch(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"not UTF-8 ({exc.reason})") from None
    head = text[:4000]
    if "<eFetchResult" in head or "<ERROR>" in head:
        start = text.find("<ERROR>")
        message = text[start + 7:text.find("</ERROR>")] if start >= 0 else "error"
        raise EutilsError(" ".join(message.split())[:200] or "efetch reported an error")
    if "<PubmedArticleSet" not in text:
        raise _Unreadable("not a PubmedArticleSet")
    if "</PubmedArticleSet>" not in text[-200:] and not text.rstrip().endswith("<PubmedArticleSet/>"):
        raise _Unreadable("the XML is cut short")
    return text


def _parse_elink(data: bytes) -> dict[str, list[Neighbour]]:
    if b"<!ENTITY" in data:  # elink never declares entities; refuse rather than expand them
        raise _Unreadable("the XML declares entities")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise _Unreadable(f"not well-formed XML: {exc}") from None
    if root.tag != "eLinkResult":
        raise _Unreadable(f"root element is <{root.tag}>, not <eLinkResult>")
    error = root.findtext("ERROR")
    if error and not root.findall("LinkSet"):
        raise EutilsError(" ".join(error.split())[:200])
    result: dict[str, list[Neighbour]] = {}
    for link_set in root.findall("LinkSet"):
        source = (link_set.findtext("IdList/Id") or "").strip()
        if not source:
            continue
        found: dict[str, float] = {}
        for db in link_set.findall("LinkSetDb"):
            if (db.findtext("LinkName") or "pubmed_pubmed").strip() != "pubmed_pubmed":
                continue
            for link in db.findall("Link"):
                pmid = (link.findtext("Id") or "").strip()
                try:
                    score = float((link.findtext("Score") or "0").strip())
                except ValueError:
                    score = 0.0
                if pmid.isdigit() and pmid != source:
                    found[pmid] = max(score, found.get(pmid, score))
        ranked = sorted(found.items(), key=lambda item: (-item[1], int(item[0])))
        result[source] = [Neighbour(pmid, score) for pmid, score in ranked]
    return result


def _parse_esummary(data: bytes) -> dict[str, dict]:
    result = _json(data).get("result")
    if not isinstance(result, dict):
        raise _Unreadable("no result")
    summaries = {}
    for uid in result.get("uids") or []:
        item = result.get(str(uid))
        if isinstance(item, dict) and not item.get("error"):
            summaries[str(uid)] = item
    return summaries
