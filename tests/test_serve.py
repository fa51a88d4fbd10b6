"""`digest serve` without a browser: path safety, HTTP details, reload events, rebuilds, shutdown."""

from __future__ import annotations

import http.client
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import pytest

from generator import livereload, serve
from generator.serve import DevServer, content_type, is_loopback, resolve_in_folder
from generator.watch import Debouncer, Watcher
from tests.conftest import REPO

RECORD = "title: {title}\npmid: 111\njournal: Journal of Tests\npublished: 2024-01-02\n"
SECRET = "TOP-SECRET-OUTSIDE-THE-SITE"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Client:
    """Send requests with the path exactly as written (no client-side normalisation)."""

    def __init__(self, server: DevServer):
        self.port = server.httpd.server_address[1]

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request(path)


def write_digest(root: Path, config: str = "title: Serve test\n", files: dict[str, str | bytes] | None = None) -> Path:
    """Write a one-article digest (plus extra files) at `root`, with a secret file beside its site."""
    (root / "content").mkdir(parents=True)
    (root / "content/a.yaml").write_text(RECORD.format(title="First title"), encoding="utf-8")
    (root / "digest.yaml").write_text(config, encoding="utf-8")
    for relative, data in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    (root.parent / "secret.txt").write_text(SECRET, encoding="utf-8")
    (root / "secret.txt").write_text(SECRET, encoding="utf-8")
    return root


@pytest.fixture
def make_digest(tmp_path: Path) -> Callable[..., Path]:
    """Return a function that writes a one-article digest in tmp_path and returns its root."""
    return lambda *args, **kwargs: write_digest(tmp_path / "digest", *args, **kwargs)


@pytest.fixture
def start_server() -> Iterator[Callable[..., DevServer]]:
    """Start DevServers on free ports; stop them all at the end of the test."""
    servers: list[DevServer] = []

    def start(root: Path, **options) -> DevServer:
        server = DevServer(root, port=0, out=io.StringIO(), err=io.StringIO(), **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[DevServer, Client]]:
    """One digest served at the host's root for the read-only tests, with files of every content type
    and symlinks pointing in and out of the output folder."""
    root = write_digest(tmp_path_factory.mktemp("served") / "digest", files={
        "static/x.css": "body{}", "static/x.js": "1;", "static/x.json": "{}", "static/x.xml": "<a/>",
        "static/x.svg": "<svg/>", "static/x.wasm": b"\0asm\1\0\0\0", "static/x.md": "# x\n</body>",
        "static/x.txt": "x", "static/big.bin": os.urandom(4 * 1024 * 1024),
    })
    server = DevServer(root, port=0, out=io.StringIO(), err=io.StringIO())
    server.start()
    assert not server.state.problems, [p.format() for p in server.state.problems]
    site = server.state.config.output_path
    (site / "leak.txt").symlink_to(site.parent / "secret.txt")
    (site / "outside").symlink_to(site.parent.parent)
    (site / "same.txt").symlink_to("x.txt")
    (site / "evil.example").mkdir()
    yield server, Client(server)
    server.stop()


# --- path safety -------------------------------------------------------------------------------

TRAVERSALS = [
    "/../secret.txt", "/../../secret.txt", "/articles/../../secret.txt",
    "/%2e%2e/secret.txt", "/%2e%2e%2fsecret.txt", "/%2E%2E%2F%2E%2E%2Fsecret.txt", "/..%2fsecret.txt",
    "/.%2e/secret.txt", "/%252e%252e/secret.txt", "/..%5csecret.txt", "/%5c..%5csecret.txt",
    "//etc/passwd", "/etc/passwd", "/%2fetc%2fpasswd", "///etc/passwd", "/%00/../secret.txt",
    "http://evil.example/../secret.txt", "/leak.txt", "/outside/secret.txt", "/outside/",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_never_serves_a_file_outside_the_output_folder(served, path):
    _, client = served
    status, _, body = client.get(path)
    assert status == 404
    assert SECRET.encode() not in body and b"root:" not in body


def test_symlink_inside_the_output_folder_is_served(served):
    _, client = served
    assert client.get("/same.txt")[0] == 200


def test_resolve_in_folder_refuses_a_sibling_with_the_same_prefix(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site-secret").mkdir()
    (tmp_path / "site-secret/x").write_text("x")
    assert resolve_in_folder(tmp_path / "site", ["..", "site-secret", "x"]) is None
    assert resolve_in_folder(tmp_path / "site", []) == os.path.realpath(tmp_path / "site")


# --- HTTP details ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("index.html", "text/html; charset=utf-8"), ("x.css", "text/css; charset=utf-8"),
    ("x.js", "text/javascript; charset=utf-8"), ("x.json", "application/json; charset=utf-8"),
    ("x.xml", "application/xml; charset=utf-8"), ("x.svg", "image/svg+xml"), ("x.wasm", "application/wasm"),
    ("x.md", "text/markdown; charset=utf-8"), ("x.txt", "text/plain; charset=utf-8"),
])
def test_content_types(served, name, expected):
    _, client = served
    status, headers, _ = client.get("/" + name)
    assert status == 200
    assert headers["content-type"] == expected
    assert headers["x-content-type-options"] == "nosniff"


def test_content_type_fallbacks():
    assert content_type("a/b.PNG") == "image/png"
    assert content_type("noext") == "application/octet-stream"


def test_head_sends_the_headers_of_get_without_a_body(served):
    _, client = served
    for path in ("/", "/x.css", "/missing/"):
        get_status, get_headers, get_body = client.get(path)
        head_status, head_headers, head_body = client.request(path, "HEAD")
        assert head_status == get_status
        assert head_body == b""
        assert head_headers["content-length"] == get_headers["content-length"] == str(len(get_body))
        assert head_headers["content-type"] == get_headers["content-type"]


def test_unknown_page_gets_the_sites_404_page_with_status_404(served):
    server, client = served
    status, headers, body = client.get("/no/such/page/")
    assert status == 404
    assert headers["content-type"] == "text/html; charset=utf-8"
    on_disk = (server.state.config.output_path / "404.html").read_bytes()
    assert body.startswith(on_disk.split(b"</body>")[0])
    assert b"data-digest-livereload" in body


def test_folder_without_slash_redirects_and_folder_serves_index(served):
    _, client = served
    status, headers, _ = client.get("/articles/111?x=1")
    assert (status, headers["location"]) == (302, "/articles/111/?x=1")
    status, _, body = client.get("/articles/111/")
    assert status == 200 and b"First title" in body
    assert client.get("/assets/")[0] == 404  # no folder listings
    for path in ("//evil.example", "/%2fevil.example", "///evil.example"):  # never a redirect to another host
        status, headers, _ = client.get(path)
        assert (status, headers["location"]) == (302, "/evil.example/")


def test_reload_script_only_in_served_html_never_on_disk(served):
    server, client = served
    _, _, page = client.get("/articles/111/")
    assert page.count(b"data-digest-livereload") == 1
    assert page.index(b"data-digest-livereload") < page.rindex(b"</body>")
    for path in ("/x.md", "/x.css", "/x.json"):  # not HTML: untouched, even with a '</body>' inside
        assert b"digest-livereload" not in client.get(path)[2]
    assert client.get("/x.md")[2] == b"# x\n</body>"
    site = server.state.config.output_path
    assert not [p for p in site.rglob("*") if p.is_file() and b"__digest__" in p.read_bytes()]


def test_inject_places_the_snippet_before_the_last_body_end():
    assert livereload.inject(b"<body>a</BODY ></html>", "<s>") == b"<body>a<s></BODY ></html>"
    assert livereload.inject(b"no body", "<s>") == b"no body<s>"


def test_fifty_concurrent_requests(served):
    _, client = served
    paths = ["/", "/articles/111/", "/x.css", "/big.bin", "/missing"] * 10
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(client.get, paths))
    assert [status for status, _, _ in results] == [200, 200, 200, 200, 404] * 10
    assert len({body for status, _, body in results[1::5]}) == 1


def test_survives_clients_that_disconnect_mid_response(served, capsys):
    _, client = served
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", client.port))
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
        sock.close()
    time.sleep(0.2)
    assert client.get("/")[0] == 200
    assert "Traceback" not in capsys.readouterr().err


# --- base path (GitHub project pages) --------------------------------------------------------

def test_serves_under_the_base_url_sub_path(make_digest, start_server):
    server = start_server(make_digest("title: T\nbase_url: https://u.github.io/repo\n"))
    client = Client(server)
    assert server.url.endswith("/repo/")
    for path in ("/", "/repo", "/?q=1"):
        status, headers, _ = client.get(path)
        assert (status, headers["location"]) == (302, "/repo/" + path[1:].removeprefix("repo"))
    assert client.get("/repo/")[0] == 200
    assert b"First title" in client.get("/repo/articles/111/")[2]
    status, _, body = client.get("/articles/111/")  # a root-relative link that would break on GitHub
    assert status == 404
    # The 404 page points at the public site so it works at any depth; the preview keeps it local.
    assert b'<base href="/repo/">' in body and b"https://u.github.io/repo/\"" not in body
    assert client.get("/repository/")[0] == 404


# --- rebuilds and reload events ----------------------------------------------------------------

def read_events(port: int, since: str, found: list[str], stop: threading.Event, page: str = "") -> None:
    """Collect `reload` event data from the stream until `stop` is set or the stream ends."""
    # Longer than the server's keep-alive interval: a quiet stream is not a dead one.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=livereload.KEEPALIVE_SECONDS + 5)
    try:
        conn.request("GET", f"{livereload.EVENTS_PATH}?since={since}" + (f"&page={page}" if page else ""))
        response = conn.getresponse()
        assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        while not stop.is_set():
            line = response.fp.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                found.append(line[6:].strip().decode())
    except OSError:
        return  # the server stopped or cut the connection
    finally:
        conn.close()


def test_burst_of_five_writes_gives_one_rebuild_and_one_reload(make_digest, start_server):
    root = make_digest()
    server = start_server(root)
    assert server.builds == 1
    events: list[str] = []
    stop = threading.Event()
    threading.Thread(target=read_events, args=(Client(server).port, server.state.broker.version, events, stop),
                     daemon=True).start()
    time.sleep(0.1)
    for n in range(5):
        (root / "content/a.yaml").write_text(RECORD.format(title=f"Edit {n}"), encoding="utf-8")
    assert wait_for(lambda: len(events) == 1)
    time.sleep(0.5)  # the build read every record: that must not count as a change
    stop.set()
    assert server.builds == 2 and len(events) == 1
    assert b"Edit 4" in Client(server).get("/articles/111/")[2]


def test_the_open_page_is_shown_and_reloaded_before_the_rest_of_the_site_is_built(make_digest, start_server,
                                                                                  monkeypatch):
    import generator.build

    root = make_digest(files={"content/b.yaml": RECORD.format(title="Other article").replace("111", "222")})
    server = start_server(root)
    client = Client(server)
    release = threading.Event()
    real_render_into = generator.build.render_into

    def slow_render_into(*args, **kwargs):  # the rest of the site takes long to render
        release.wait(10)
        return real_render_into(*args, **kwargs)

    monkeypatch.setattr(generator.build, "render_into", slow_render_into)
    events: list[str] = []
    stop = threading.Event()
    threading.Thread(target=read_events, args=(client.port, server.state.broker.version, events, stop,
                                               "/articles/111/"), daemon=True).start()
    assert wait_for(lambda: server.state.open_pages() == {"articles/111/index.html"})
    (root / "content/a.yaml").write_text(RECORD.format(title="Second title"), encoding="utf-8")
    try:
        assert wait_for(lambda: len(events) == 1)  # reloaded while the build is still rendering the rest
        assert server.builds == 1
        status, _, body = client.get("/articles/111/")
        assert status == 200 and b"Second title" in body and livereload.SCRIPT_PATH.encode() in body
        style = re.search(rb'href="../../(assets/style[^"]+\.css)"', body).group(1).decode()
        status, headers, css = client.get(f"/{style}")  # the theme's assets do not wait either
        assert status == 200 and headers["content-type"].startswith("text/css") and css
        home: list[bytes] = []  # a page the edit changed but no browser showed waits for the build
        waiting = threading.Thread(target=lambda: home.append(client.get("/")[2]), daemon=True)
        waiting.start()
        time.sleep(0.3)
        assert not home and server.builds == 1
    finally:
        release.set()
    waiting.join(10)
    assert home and b"Second title" in home[0]
    assert wait_for(lambda: server.builds == 2)
    time.sleep(0.3)
    stop.set()
    assert len(events) == 1  # the pages that reloaded early are not reloaded a second time
    site = server.state.config.output_path
    assert b"Second title" in (site / "articles/111/index.html").read_bytes()


def test_output_path_of_a_url():
    assert serve.output_path_of("/", "/") == "index.html"
    assert serve.output_path_of("/articles/1/", "/") == "articles/1/index.html"
    assert serve.output_path_of("/repo/articles/1/", "/repo/") == "articles/1/index.html"
    assert serve.output_path_of("/repo/", "/repo/") == "index.html"
    assert serve.output_path_of("/assets/a.css", "/") == "assets/a.css"
    assert serve.output_path_of("/other/", "/repo/") is None
    assert serve.output_path_of("/articles/../../x", "/") is None


def test_debouncer_batches_a_burst():
    batches: list[set[Path]] = []
    debouncer = Debouncer(batches.append, delay=0.2)
    debouncer.start()
    for n in range(5):
        debouncer.add([Path(f"/x/{n % 2}")])
    assert wait_for(lambda: len(batches) == 1)
    debouncer.add([Path("/x/2")])  # after the quiet period: the next batch
    assert wait_for(lambda: len(batches) == 2)
    time.sleep(0.3)
    debouncer.stop()
    assert batches == [{Path("/x/0"), Path("/x/1")}, {Path("/x/2")}]


def test_an_event_that_ends_a_save_shortens_the_quiet_period(monkeypatch):
    import generator.watch

    monkeypatch.setattr(generator.watch, "SETTLED_SECONDS", 0.1)
    fired: list[float] = []
    debouncer = Debouncer(lambda batch: fired.append(time.monotonic()), delay=1.0)
    debouncer.start()
    try:
        started = time.monotonic()
        debouncer.add([Path("/x/a")])  # a write: the full quiet period
        debouncer.add([Path("/x/a")], settled=True)  # then the file is closed: the save is over
        assert wait_for(lambda: fired, timeout=2)
        assert fired[0] - started < 0.9
        started = time.monotonic()
        debouncer.add([Path("/x/a")], settled=True)
        debouncer.add([Path("/x/b")])  # more writes after a close: the full period again
        assert wait_for(lambda: len(fired) == 2, timeout=3)
        assert fired[1] - started >= 1.0
    finally:
        debouncer.stop()


def test_output_folder_and_editor_noise_are_ignored(make_digest, start_server):
    root = make_digest()
    server = start_server(root)
    (server.state.config.output_path / "touched.html").write_text("x")
    (root / "content/.a.yaml.swp").write_text("x")
    (root / "content/a.yaml~").write_text("x")
    (root / "notes.txt").write_text("x")
    time.sleep(0.4)
    assert server.builds == 1
    watcher: Watcher = server.watcher
    assert not watcher.is_relevant(server.state.config.output_path / "index.html")
    assert watcher.is_relevant(root / "digest.yaml") and watcher.is_relevant(root / "content/b/c.yaml")


def test_stream_announces_a_newer_build_at_once(served):
    server, client = served
    events: list[str] = []
    stop = threading.Event()
    threading.Thread(target=read_events, args=(client.port, "old-version", events, stop), daemon=True).start()
    assert wait_for(lambda: events == [server.state.broker.version])
    stop.set()


def test_failed_build_shows_errors_over_the_last_good_site_until_fixed(make_digest, start_server):
    root = make_digest()
    server = start_server(root)
    client = Client(server)
    (root / "content/a.yaml").write_text("title: [broken\npmid: 111\n", encoding="utf-8")
    assert wait_for(lambda: server.builds == 2)
    status, _, body = client.get("/articles/111/")
    assert status == 200 and b"First title" in body  # the last good site is still there
    assert b'id="digest-error-overlay"' in body
    assert re.search(rb"content/a\.yaml:\d+: invalid YAML", body)
    assert "content/a.yaml:" in server.err.getvalue()
    assert b"digest-error-overlay" in client.get("/missing/")[2]
    (root / "content/a.yaml").write_text(RECORD.format(title="Fixed title"), encoding="utf-8")
    assert wait_for(lambda: server.builds == 3)
    body = client.get("/articles/111/")[2]
    assert b"Fixed title" in body and b"digest-error-overlay" not in body


def test_unknown_template_variable_is_shown_with_its_line(make_digest, start_server):
    root = make_digest(files={"templates/404.html": "<body>\n<p>{{ site.title }}</p>\n</body>\n"})
    server = start_server(root)
    (root / "templates/404.html").write_text("<body>\n<p>{{ no_such_variable }}</p>\n</body>\n")
    assert wait_for(lambda: server.builds == 2)
    body = Client(server).get("/")[2]
    assert re.search(rb"templates/404\.html:2: .*no_such_variable", body)


def test_digest_yaml_is_reloaded_on_every_rebuild(make_digest, start_server):
    root = make_digest()
    server = start_server(root)
    (root / "digest.yaml").write_text("title: Renamed digest\nbase_url: https://u.github.io/moved/\n")
    assert wait_for(lambda: server.builds == 2)
    client = Client(server)
    assert client.get("/")[1]["location"] == "/moved/"
    assert b"Renamed digest" in client.get("/moved/")[2]
    (root / "digest.yaml").write_text("title: T\nbase_ulr: typo\n")  # broken config: errors, old config kept
    assert wait_for(lambda: server.builds == 3)
    body = client.get("/moved/")[2]
    assert b"digest.yaml:2: unknown setting" in body and b"Renamed digest" in body


def test_broken_digest_yaml_at_start_recovers_when_fixed(make_digest, start_server):
    root = make_digest("title: [oops\n")
    server = start_server(root)
    client = Client(server)
    status, _, body = client.get("/")
    assert status == 404 and b"digest.yaml:" in body and b"invalid YAML" in body
    (root / "digest.yaml").write_text("title: Good now\n")
    assert wait_for(lambda: server.builds == 2)
    assert b"Good now" in client.get("/")[2]


def test_a_folder_created_after_start_is_watched(make_digest, start_server):
    root = make_digest()
    server = start_server(root)
    (root / "static").mkdir()
    assert wait_for(lambda: server.builds == 2)
    time.sleep(0.2)
    (root / "static/late.txt").write_text("late")
    assert wait_for(lambda: Client(server).get("/late.txt")[2] == b"late")


def test_polling_fallback_sees_a_save(make_digest, start_server):
    root = make_digest()
    server = start_server(root, poll=True)
    assert server.watcher.poll
    time.sleep(0.3)  # let the first snapshot be taken
    (root / "content/a.yaml").write_text(RECORD.format(title="Polled title"), encoding="utf-8")
    assert wait_for(lambda: b"Polled title" in Client(server).get("/articles/111/")[2])
    assert server.builds == 2


# --- stopping ----------------------------------------------------------------------------------

def test_stop_is_quick_and_leaves_no_threads(make_digest):
    before = set(threading.enumerate())
    server = DevServer(make_digest(), port=0, out=io.StringIO(), err=io.StringIO())
    server.start()
    client = Client(server)
    stop = threading.Event()
    threading.Thread(target=read_events, args=(client.port, server.state.broker.version, [], stop),
                     daemon=True).start()
    idle = socket.create_connection(("127.0.0.1", client.port))  # a keep-alive connection, idle
    idle.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    idle.close()
    assert wait_for(lambda: not set(threading.enumerate()) - before, 1.0), set(threading.enumerate()) - before


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_port_in_use_is_an_error_not_a_traceback(make_digest, capsys):
    from generator.cli import make_parser
    from generator.serve import run_serve

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    args = make_parser().parse_args(["serve", "--root", str(make_digest()), "--port", str(taken.getsockname()[1]),
                                     "-q"])
    try:
        assert run_serve(args) == 1
    finally:
        taken.close()
    assert "cannot serve on 127.0.0.1" in capsys.readouterr().err


def child_pids(pid: int) -> list[int]:
    """Return the processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def is_running(pid: int) -> bool:
    """Return True when process `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_cli(root: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """Run `digest serve` as a subprocess; return it and the URL it printed."""
    process = subprocess.Popen([sys.executable, "-m", "generator", "serve", "--root", str(root), *options],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ""
    while "Serving" not in line:
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise AssertionError(process.stderr.read())
    return process, re.search(r"http://\S+", line).group(0)


# `digest serve` whose build forks two workers that sleep, as a parallel render does (build.py
# renders big changes in ForkedWorkers), once content/slow.txt exists.
FORKING_SERVE = """
import sys, time
from generator import cli, serve
from generator.workers import ForkedWorkers

def sleep(seconds):
    time.sleep(seconds)

def build(config, **options):
    if (config.content_path / "slow.txt").exists():
        with ForkedWorkers(sleep, [30, 30], 2) as pool:
            pool.take_all()

serve._default_build = build
sys.exit(cli.main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_parallel_rebuild_ends_its_workers(make_digest):
    root = make_digest()
    process = subprocess.Popen([sys.executable, "-c", FORKING_SERVE, "serve", "--root", str(root), "--port", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        while "Serving" not in (line := process.stdout.readline()):
            assert line, process.stderr.read()
        (root / "content/slow.txt").write_text("x")
        assert wait_for(lambda: len(child_pids(process.pid)) == 2)
        workers.extend(child_pids(process.pid))
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 1.0
        # Workers left running would go on writing into the spare tree after the server ended.
        assert wait_for(lambda: not any(is_running(pid) for pid in workers), 1.0)
    finally:
        for pid in [process.pid, *workers]:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def test_cli_prints_url_warns_off_loopback_and_stops_on_sigint(make_digest):
    process, url = start_cli(make_digest(), "--port", "0", "--host", "0.0.0.0")
    try:
        port = int(re.search(r"http://[^:]+:(\d+)/", url).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=3) == 0
        assert time.monotonic() - started < 1.0
        assert "warning: serving on 0.0.0.0" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_rebuilds_asked_at_once_run_one_after_the_other(make_digest, start_server):
    """A save seen by the watcher while another rebuild is asked for (a test, an embedding tool)
    must not run two builds over one session at once: both succeed and the site shows the save."""
    import threading

    root = make_digest()
    server = start_server(root)
    record = root / "content/a.yaml"
    record.write_text(RECORD.format(title="Asked twice"), encoding="utf-8")
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(server.rebuild({record}))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [True, True, True], server.err.getvalue()
    page = (server.state.config.output_path / "articles/111/index.html").read_text(encoding="utf-8")
    assert "Asked twice" in page


def test_stop_leaves_the_exports_index_for_the_next_build(make_digest, start_server):
    """A session keeps where each entry is in the live exports in memory; stopping writes it out,
    so the next `digest build` copies unchanged entries instead of reading every citation file."""
    import marshal
    import pickle

    from generator.build import CACHE_DIR

    root = make_digest()
    server = start_server(root)
    record = root / "content/a.yaml"
    record.write_text(RECORD.format(title="Second title"), encoding="utf-8")
    assert server.rebuild({record})
    server.stop()
    site = server.state.config.output_path
    tree = (site / ".digest-tree").read_text().strip()
    live = marshal.loads((root / CACHE_DIR / "trees" / f"{tree}.manifest").read_bytes())
    index = pickle.loads((root / CACHE_DIR / "exports.pickle").read_bytes())
    assert live["digest.bib"] in index["digest.bib"]


def test_a_save_writes_its_fragments_to_the_cache_once_saves_pause(make_digest, start_server, monkeypatch):
    """A rebuild leaves writing its listing fragments to the cache folder (0.3 s in one save out of
    four or five at 10,000 articles) until saves pause, or the server stops; the next process
    then finds every fragment the session holds."""
    import generator.serve as serve_module
    from generator.build import CACHE_DIR
    from generator.cache_files import JournaledDict

    monkeypatch.setattr(serve_module, "TIDY_SECONDS", 1.0)
    root = make_digest()
    server = start_server(root)
    record = root / "content/a.yaml"
    record.write_text(RECORD.format(title="Saved later"), encoding="utf-8")
    assert server.rebuild({record})
    assert server.session.later  # not written during the rebuild
    deadline = time.monotonic() + 10
    while server.session.later and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.session.later  # written once saves paused
    stored = JournaledDict(root / CACHE_DIR / "fragments.pickle").load()
    assert server.session.fragments and set(server.session.fragments) <= set(stored)
    record.write_text(RECORD.format(title="Saved at stop"), encoding="utf-8")
    assert server.rebuild({record})
    server.stop()
    assert not server.session.later
    stored = JournaledDict(root / CACHE_DIR / "fragments.pickle").load()
    assert set(server.session.fragments) <= set(stored)
