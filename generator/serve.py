"""`digest serve`: build, serve the output folder locally, rebuild on save, reload open pages.

Follows MkDocs `livereload` and Zola `serve`: a watchdog observer (polling with `--poll`),
debounced rebuilds, a reload script added to HTML as it is served, and build errors shown
over the last good site until the file is fixed.

Files are looked up in the output folder on every request, never cached: each build swaps a new
tree in for the old one by renaming, so an open handle or a cached listing would show the old site.
"""

from __future__ import annotations

import argparse
import errno
import gc
import ipaddress
import mimetypes
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TextIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

from generator import livereload
from generator.config import CONFIG_FILE, SiteConfig, load_config
from generator.errors import DigestError, Problem
from generator.watch import Watcher

CLOSED_CHECK_SECONDS = 1.0  # how often an idle event stream checks that its client is still there
PRIORITY_SECONDS = 0.5  # the longest a rebuild pauses for the pages it showed early (see SiteState.show)
WAIT_FOR_BUILD_SECONDS = 10.0  # a request during a rebuild waits for it (up to this), then shows the new pages
TIDY_SECONDS = 2.0  # after a rebuild, this long without another one before its garbage is collected
TEXT = "; charset=utf-8"
CONTENT_TYPES = {
    ".html": "text/html" + TEXT,
    ".htm": "text/html" + TEXT,
    ".css": "text/css" + TEXT,
    ".js": "text/javascript" + TEXT,
    ".mjs": "text/javascript" + TEXT,
    ".json": "application/json" + TEXT,
    ".webmanifest": "application/manifest+json" + TEXT,
    ".xml": "application/xml" + TEXT,
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".md": "text/markdown" + TEXT,
    ".txt": "text/plain" + TEXT,
    ".csv": "text/csv" + TEXT,
    ".bib": "application/x-bibtex" + TEXT,
    ".ris": "application/x-research-info-systems" + TEXT,
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".pdf": "application/pdf",
}


def content_type(name: str) -> str:
    """Return the Content-Type for a file name; text types say charset=utf-8."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if not guessed:
        return "application/octet-stream"
    return guessed + TEXT if guessed.startswith("text/") else guessed


def resolve_in_folder(folder: Path, parts: list[str]) -> str | None:
    """Return the real path of `folder/parts...` if it exists inside `folder` (symlinks resolved), else None."""
    real_root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(real_root, *parts)) if parts else real_root
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None  # '..' or a symlink that points out of the output folder
    return real if os.path.exists(real) else None


def output_path_of(url_path: str, base_path: str) -> str | None:
    """Return the output file a URL path names ('/repo/a/' -> 'a/index.html'), None if outside the site."""
    if not url_path.startswith(base_path):
        return None
    parts = url_path[len(base_path):].split("/")
    if any(part in (".", "..") or "\x00" in part or "\\" in part for part in parts):
        return None
    relative = "/".join(part for part in parts if part)
    return f"{relative}/index.html" if relative and url_path.endswith("/") else relative or "index.html"


class SiteState:
    """What the server shows: the current config, the last build's problems, and the reload broker.

    During a rebuild, requests wait for it to finish, except for what the build already gave
    (`show`, see `generator.build.Preview`): the changed pages open in a browser, rendered first, and
    files the build leaves as they are. Open pages reload as soon as those are shown.
    """

    def __init__(self, config: SiteConfig):
        self.config = config
        self.problems: list[Problem] = []
        self.broker = livereload.ReloadBroker()
        self._building = False
        self._cond = threading.Condition()
        self._open_pages: dict[str, int] = {}  # output path -> event streams showing it
        self._early: dict[str, bytes] | None = None  # pages shown before the build ends
        self._is_current: Callable[[str], bool] | None = None
        self._early_version = ""
        self._awaited: set[str] = set()  # pages shown early whose browser has not come back yet

    def begin_build(self) -> None:
        with self._cond:
            self._building = True
            self._early, self._is_current, self._early_version = None, None, ""

    def end_build(self, config: SiteConfig, problems: list[Problem]) -> None:
        """Record the outcome, then tell open pages to reload (only now is the new site complete),
        unless they already did, to this build's pages."""
        with self._cond:
            reloaded = self._early is not None and not problems and config == self.config
            self.config = config
            self.problems = problems
            self._building = False
            self._early, self._is_current = None, None
            self._cond.notify_all()
        if not reloaded:
            self.broker.publish()

    def wait_until_built(self, timeout: float = WAIT_FOR_BUILD_SECONDS) -> None:
        """Block while a build is running, so a page asked for mid-build shows that build's result."""
        with self._cond:
            self._cond.wait_for(lambda: not self._building, timeout)

    # The preview protocol of generator.build ---------------------------------------------------

    def open_pages(self) -> set[str]:
        with self._cond:
            return set(self._open_pages)

    def show(self, files: dict[str, bytes]) -> None:
        """Serve these files (the changed open pages, the theme's assets) from now on; reload open pages."""
        with self._cond:
            self._early = files
            self._early_version = self.broker.publish()
            # The rest of the build waits until a reloaded page is back (its event stream reconnects
            # once the page has run its scripts), so that it does not compete with it for the
            # processor; at most PRIORITY_SECONDS, and not while a request needs the rest.
            self._awaited = set(files)
            self._cond.wait_for(lambda: not self._awaited, PRIORITY_SECONDS)
            self._awaited = set()

    def planned(self, is_current: Callable[[str], bool]) -> None:
        """Serve at once, from the live site, every file that `is_current` (this build leaves it as it is)."""
        with self._cond:
            self._is_current = is_current
            self._cond.notify_all()

    def early(self, url_path: str) -> tuple[bytes | None, str] | None:
        """During a build, return (bytes, version) for a file shown early, (None, version) for a file
        to serve from the live site at once, None when the request must wait for the build."""
        with self._cond:
            if not self._building or self._early is None:
                return None
            path = output_path_of(url_path, self.config.base_path)
            if path is None:
                return None
            if path in self._early:
                return self._early[path], self._early_version
            if self._is_current is None:
                self._awaited = set()  # this request needs the plan: stop pausing the build
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._is_current is not None or not self._building,
                                    WAIT_FOR_BUILD_SECONDS)
            if self._building and self._is_current is not None and self._is_current(path):
                return None, self._early_version
            return None

    def stream_opened(self, url_path: str) -> str | None:
        """Note that a page's event stream is open; return its output path (to pass to `stream_closed`)."""
        with self._cond:
            path = output_path_of(url_path, self.config.base_path)
            if path is not None:
                self._open_pages[path] = self._open_pages.get(path, 0) + 1
                if path in self._awaited:
                    self._awaited = set()
                    self._cond.notify_all()
            return path

    def stream_closed(self, path: str | None) -> None:
        if path is None:
            return
        with self._cond:
            left = self._open_pages.get(path, 0) - 1
            if left > 0:
                self._open_pages[path] = left
            else:
                self._open_pages.pop(path, None)


class DigestRequestHandler(BaseHTTPRequestHandler):
    """Serve the output folder under the site's base path, with the reload script in every page."""

    server: DigestHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection gives up its thread after this many seconds
    server_version = "digest-serve"

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _respond(self, head: bool) -> None:
        try:
            self._route(head)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away mid-response: nothing to do

    def _route(self, head: bool) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form request target
            target = urlsplit(target).path or "/"
        raw_path, _, query = target.split("#", 1)[0].partition("?")
        if raw_path == livereload.EVENTS_PATH:
            fields = parse_qs(query)
            self._send_events(fields.get("since", [""])[0], fields.get("page", [""])[0], head)
            return
        if raw_path == livereload.SCRIPT_PATH:
            self._send_bytes(HTTPStatus.OK, CONTENT_TYPES[".js"], livereload.CLIENT_JS.encode("utf-8"), head)
            return
        if raw_path == livereload.STYLE_PATH:
            self._send_bytes(HTTPStatus.OK, CONTENT_TYPES[".css"], livereload.OVERLAY_CSS.encode("utf-8"), head)
            return
        state = self.server.state
        path = unquote(raw_path, errors="replace")
        early = state.early(path)
        if early is not None and early[0] is not None:
            kind = content_type(path if not path.endswith("/") else path + "index.html")
            body = self._page(early[0], state.config, [], early[1]) if kind.startswith("text/html") else early[0]
            self._send_bytes(HTTPStatus.OK, kind, body, head)
            return
        if early is None:
            state.wait_until_built()
        config, problems = state.config, state.problems
        # Before reading the page: a newer build then reloads it again.
        version = early[1] if early is not None else state.broker.version
        base = config.base_path
        if "\x00" in path or "\\" in path or not path.startswith("/"):
            self._send_not_found(config, problems, version, head)
            return
        if base != "/" and path in ("/", base.rstrip("/")):
            self._redirect(base + (f"?{query}" if query else ""), head)
            return
        if not path.startswith(base):
            self._send_not_found(config, problems, version, head)
            return
        parts = [part for part in path[len(base):].split("/") if part]
        if any(part in (".", "..") for part in parts):
            self._send_not_found(config, problems, version, head)
            return
        real = resolve_in_folder(config.output_path, parts)
        if real and os.path.isdir(real):
            if not path.endswith("/"):
                # Rebuilt from the checked parts, so the target can never start with '//' (another host).
                self._redirect(quote(base + "/".join(parts) + "/") + (f"?{query}" if query else ""), head)
                return
            real = resolve_in_folder(config.output_path, [*parts, "index.html"])
        if not real or not os.path.isfile(real):
            self._send_not_found(config, problems, version, head)
            return
        self._send_file(real, config, problems, version, head)

    def _send_file(self, real: str, config: SiteConfig, problems: list[Problem], version: str, head: bool) -> None:
        kind = content_type(real)
        try:
            handle = open(real, "rb")
        except OSError:
            self._send_not_found(config, problems, version, head)
            return
        with handle:
            if kind.startswith("text/html"):
                body = self._page(handle.read(), config, problems, version)
                self._send_bytes(HTTPStatus.OK, kind, body, head)
                return
            size = os.fstat(handle.fileno()).st_size
            self._send_headers(HTTPStatus.OK, kind, size)
            if not head:
                while chunk := handle.read(64 * 1024):
                    self.wfile.write(chunk)

    def _send_not_found(self, config: SiteConfig, problems: list[Problem], version: str, head: bool) -> None:
        """Answer 404 with the site's own 404.html, as GitHub Pages does."""
        page_path = resolve_in_folder(config.output_path, ["404.html"])
        try:
            page = Path(page_path).read_bytes() if page_path else None
        except OSError:
            page = None
        if page is None:
            page = livereload.standalone_page("Page not found", "<h1>Page not found</h1>")
        body = self._page(page, config, problems, version)
        self._send_bytes(HTTPStatus.NOT_FOUND, CONTENT_TYPES[".html"], body, head)

    def _page(self, page: bytes, config: SiteConfig, problems: list[Problem], version: str) -> bytes:
        """Return a page as the preview shows it: local links for the public address, reload script, errors."""
        if config.base_url:
            # The 404 page links to the public site (`<base href>`, its home link) so it works at any
            # depth once deployed; in the preview those links must stay on this server.
            public = config.base_url.encode("utf-8")
            local = config.base_path.encode("utf-8")
            page = page.replace(b'href="' + public, b'href="' + local).replace(b'src="' + public, b'src="' + local)
        snippet = (livereload.error_overlay(problems) if problems else "") + livereload.client_script(version)
        return livereload.inject(page, snippet)

    def _redirect(self, location: str, head: bool) -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _send_headers(self, status: HTTPStatus, kind: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")  # a preview must never show a stale page
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

    def _send_bytes(self, status: HTTPStatus, kind: str, body: bytes, head: bool) -> None:
        self._send_headers(status, kind, len(body))
        if not head:
            self.wfile.write(body)

    def _send_events(self, since: str, page: str, head: bool) -> None:
        """Stream `reload` events until the client leaves or the server stops."""
        opened = self.server.state.stream_opened(page) if page and not head else None
        try:
            self._stream_events(since, head)
        finally:
            self.server.state.stream_closed(opened)

    def _stream_events(self, since: str, head: bool) -> None:
        self.close_connection = True  # the stream ends when the connection does
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream" + TEXT)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        broker = self.server.state.broker
        self.wfile.write(b"retry: 500\n\n")  # reconnect quickly when the server restarts
        self.wfile.flush()
        quiet_since = time.monotonic()
        while not broker.closed:
            version = broker.wait_for_change(since, CLOSED_CHECK_SECONDS)
            if broker.closed or self._client_left():
                return
            if version is None:
                if time.monotonic() - quiet_since < livereload.KEEPALIVE_SECONDS:
                    continue
                self.wfile.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            else:
                self.wfile.write(livereload.event_message("reload", version))
                since = version
            self.wfile.flush()


    def _client_left(self) -> bool:
        """Return True once the client closed the stream (its socket reads as end of file).

        Noticed within CLOSED_CHECK_SECONDS instead of at the next keep-alive write, so a tab that
        was closed or left soon stops counting as an open page (see SiteState.open_pages).
        """
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class DigestHTTPServer(ThreadingHTTPServer):
    """A threading server whose connections can all be closed at once when it stops."""

    daemon_threads = True  # an open event stream must never keep the process alive
    request_queue_size = 128  # many tabs/requests at once; the default backlog of 5 drops connections
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SiteState, verbose: bool = False):
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, DigestRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open connection (event streams, idle keep-alives), so their threads end now."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that disconnects is normal, not worth a traceback
        if self.verbose:
            super().handle_error(request, client_address)
        else:
            print(f"digest serve: error while answering {client_address[0]}: {sys.exc_info()[1]!r}",
                  file=sys.stderr)


def is_loopback(host: str) -> bool:
    """Return True when `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DevServer:
    """Build, serve and watch one digest; `start()` then `stop()` (also usable from tests, in-process)."""

    def __init__(
        self,
        root: Path,
        overrides: dict[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        poll: bool = False,
        verbose: bool = False,
        quiet: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ):
        self.root = Path(root).resolve()
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self.host, self.port = host, port
        self.verbose, self.quiet = verbose, quiet
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.builds = 0  # completed build attempts, for tests and the benchmark
        self.session: Any = None  # the build's in-memory state, kept between rebuilds
        self._tidy: threading.Timer | None = None  # see _tidy_later
        self.state = SiteState(self._fallback_config())
        self.watcher = Watcher(self._on_change, poll=poll)
        # One rebuild at a time: the watcher's thread and a direct call share the session, the
        # build count and the preview state (the build itself also takes a lock of the process).
        self._building = threading.Lock()
        self.httpd: DigestHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _fallback_config(self) -> SiteConfig:
        """Return the config to serve with when digest.yaml is broken at start-up."""
        values = {"output_dir": self.overrides.get("output_dir") or "site",
                  "base_url": self.overrides.get("base_url") or ""}
        if values["base_url"]:
            values["base_url"] = values["base_url"].rstrip("/") + "/"
        return SiteConfig(root=self.root, **values)

    @property
    def url(self) -> str:
        """Return the address of the site's home page on this server."""
        assert self.httpd is not None, "start() first"
        host, port = self.httpd.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}{self.state.config.base_path}"

    def start(self) -> None:
        """Build once, bind the port (raises OSError when taken), start serving and watching."""
        self.rebuild(set())
        self.httpd = DigestHTTPServer((self.host, self.port), self.state, self.verbose)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="digest-http", daemon=True)
        self._thread.start()
        self._watch_current_config()
        self.watcher.start()

    def stop(self) -> None:
        """Stop watching and serving; returns within about a second, leaving no threads behind."""
        self.watcher.stop()
        self.state.broker.close()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.close_connections()
            self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._tidy is not None:
            self._tidy.cancel()
            self._tidy.join(timeout=1.0)
        if self.session is not None and self.session.config is not None:
            from generator.build import save_export_index

            _settle_quietly(self.session)  # what the last build left for later, if saves did not pause
            save_export_index(self.session.config)  # for the next `digest build` (0.04 s)

    def _watch_current_config(self) -> None:
        config = self.state.config
        output = config.output_path
        self.watcher.set_paths(
            dirs=[config.content_path, config.templates_path, config.static_path],
            files=[config.root / CONFIG_FILE],
            ignored=[output, *(output.with_name(f".{output.name}.{kind}") for kind in ("new", "old", "spare"))],
        )

    def _on_change(self, paths: set[Path]) -> None:
        self.rebuild(paths)
        self._watch_current_config()  # digest.yaml may have moved content/, static/ or site/

    def rebuild(self, changed: set[Path]) -> bool:
        """Reload digest.yaml and build; on failure keep serving the last good site and show the errors."""
        with self._building:
            return self._rebuild(changed)

    def _rebuild(self, changed: set[Path]) -> bool:
        if changed and not self.quiet:
            names = sorted(self._shown(p) for p in changed)
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            print(f"Changed: {', '.join(names[:3])}{more}", file=self.out, flush=True)
        if self._tidy is not None:
            self._tidy.cancel()
            self._tidy = None  # nor does it hold the last session any longer (see `new_session`)
        self.state.begin_build()
        config = self.state.config
        problems: list[Problem] = []
        report = None
        try:
            config = load_config(self.root, self.overrides)
            preview = self.state if self.session is not None and self.session.config == config else None
            if self.session is None or self.session.config != config:
                from generator.build import new_session
                from generator.input_check import InputCheck

                # A new digest.yaml starts a new session, with the last one's articles and similarity
                # (see `new_session`). The load stage takes its stats and its walk of content/ from
                # the input check (only the files the kernel says changed).
                # It leaves writing its fragments to the cache folder until saves pause (`_tidy_later`).
                replacing, self.session = self.session, None
                self.session = new_session(replacing, config=config, saves_later=True, input_check=InputCheck())
            # Index for search on the first build only: a save should not wait for Pagefind.
            report = _default_build(config, index_search=self.builds == 0, session=self.session, preview=preview)
        except DigestError as exc:
            problems = list(exc.problems) or [Problem(CONFIG_FILE, str(exc))]
        except Exception as exc:  # a bug: say so, keep serving
            problems = [Problem("digest", f"internal error during the build: {exc!r}",
                                hint="run with --verbose for the traceback")]
            if self.verbose:
                traceback.print_exc(file=self.err)
        # Print before announcing the build, so the terminal is up to date when pages reload.
        if problems:
            for problem in problems:
                print(problem.format(), file=self.err)
            count = sum(p.severity == "error" for p in problems) or len(problems)
            print(f"Build failed: {count} error{'s' * (count != 1)}; still serving the last good site.",
                  file=self.err, flush=True)
        else:
            self._print_report(report)
        self.builds += 1
        self.state.end_build(config, problems)
        if self.builds == 1 and not problems:
            # What the first build keeps (articles, caches) lives as long as the server: left out of
            # the collector's full passes, which would otherwise scan it during every rebuild
            # (about 0.5 s at 10,000 articles).
            from generator.load import freeze_for_good

            freeze_for_good()
        self._tidy_later(collect=self.builds > 1)
        return not problems

    def _tidy_later(self, collect: bool) -> None:
        """Once saves pause: write what the last build left for later (its fragments, see
        `BuildSession.saves_later`; 0.3 s of one save in four or five at 10,000 articles, when the
        cache file's journal is folded into a new base), trust the files it read too soon after they
        changed (`build.settle_session`), and with `collect` collect what the builds froze that is
        garbage now (see `load.collect_frozen_garbage`: 5 MB a rebuild at 10,000 articles otherwise).
        A save before then does the first part itself, first."""
        session = self.session

        def tidy() -> None:
            from generator.load import collect_frozen_garbage, release_free_memory

            if session is not None:
                _settle_quietly(session)
            if collect:
                collect_frozen_garbage()  # (which gives back the free memory too)
            else:
                release_free_memory()

        self._tidy = threading.Timer(TIDY_SECONDS, tidy)
        self._tidy.daemon = True
        self._tidy.start()

    def _print_report(self, report: Any) -> None:
        if self.quiet or report is None:
            return
        for warning in getattr(report, "warnings", []):
            print(warning.format(), file=self.err)
        if self.verbose:
            for stage, seconds in getattr(report, "stage_seconds", {}).items():
                print(f"  {stage:<8} {seconds * 1000:8.1f} ms", file=self.out)
        summary = report.summary() if hasattr(report, "summary") else "Built"
        print(summary, file=self.out, flush=True)

    def _shown(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def _default_build(config: SiteConfig, index_search: bool = True, session: Any = None, preview: Any = None) -> Any:
    """Build the site (imported late: `digest serve --help` should not load the whole pipeline)."""
    from generator.build import build

    return build(config, index_search=index_search, session=session, preview=preview)


_fork_hook_installed = False


def _settle_quietly(session: Any) -> None:
    """`build.settle_session`, whose failure costs only a cache: the next build makes what it lacks."""
    from generator.build import settle_session

    try:
        settle_session(session)
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def _reset_signals_in_forked_workers() -> None:
    """Make processes forked by the build (its render pool) not inherit the server's signal handlers.

    Inherited, the handler would only set a flag in the worker: SIGTERM from the pool's (or the
    interpreter's) shutdown would no longer end it, and exit would wait for it forever. Workers
    ignore Ctrl-C (the terminal sends it to them too); this process decides and ends them.
    """
    global _fork_hook_installed
    if not _fork_hook_installed:
        _fork_hook_installed = True

        def in_child() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        os.register_at_fork(after_in_child=in_child)


def run_serve(args: argparse.Namespace) -> int:
    """Run `digest serve` until Ctrl-C (or SIGTERM); exit 0 when stopped, 1 when the port is taken."""
    server = DevServer(
        args.root, {"output_dir": args.out, "base_url": args.base_url},
        host=args.host, port=args.port, poll=args.poll, verbose=args.verbose, quiet=args.quiet,
    )
    try:
        server.start()
    except OSError as exc:
        server.stop()
        taken = " (is another server running? try --port 0)" if exc.errno == errno.EADDRINUSE else ""
        print(f"error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}{taken}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C during the first build
        server.stop()
        return 0
    stop = threading.Event()
    # Signals only set a flag: the main thread then stops the server in order (a KeyboardInterrupt
    # raised in the middle of `stop()` could leave threads behind).
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    _reset_signals_in_forked_workers()
    try:
        if not is_loopback(args.host):
            print(f"warning: serving on {args.host}: other machines on the network can read this preview",
                  file=sys.stderr)
        print(f"Serving {server.url}  (watching with {'polling' if server.watcher.poll else 'file events'}; "
              "Ctrl-C to stop)", flush=True)
        while not stop.wait(0.2):
            pass
        started = time.monotonic()
        server.stop()
        if not args.quiet:
            print(f"Stopped in {time.monotonic() - started:.2f} s.", flush=True)
        # The interpreter's exit then collects every object the builds left (digest, templates,
        # numpy): 0.1-0.4 s, more on a busy machine. Frozen objects are skipped, and the process
        # ends right after this anyway (Ctrl-C must stop it within a second).
        gc.freeze()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
