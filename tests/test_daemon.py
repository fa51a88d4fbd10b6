"""`digest build --daemon`: a warm process builds the same bytes as any build, reports errors the
same way, and goes away when it should (stop, idle, other code, cache folder deleted)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from generator import daemon
from generator.build import build
from generator.cache_files import load_with_parts
from generator.cli import main
from generator.config import load_config
from tests.conftest import REPO, read_tree


@pytest.fixture
def digest_root(tmp_path: Path):
    root = tmp_path / "digest"
    shutil.copytree(REPO / "content", root / "content")
    shutil.copy(REPO / "digest.yaml", root / "digest.yaml")
    yield root
    daemon.ask(root, "stop")


def running_pid(root: Path) -> int | None:
    status = daemon.ask(root, "status")
    return status["pid"] if status else None


def wait_until_ended(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our child (it is not: clients start it detached)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def clean_tree(root: Path) -> dict[str, bytes]:
    out = root.parent / "clean-site"
    shutil.rmtree(out, ignore_errors=True)
    build(load_config(root, {"output_dir": str(out)}), clean=True)
    return read_tree(out)


def test_daemon_builds_equal_clean_builds_and_keep_running(digest_root, capsys):
    assert main(["build", "--daemon", "--root", str(digest_root)]) == 0
    assert "Built 13 articles: 222 pages" in capsys.readouterr().out
    pid = running_pid(digest_root)
    assert pid is not None and pid != os.getpid()
    assert read_tree(digest_root / "site") == clean_tree(digest_root)

    record = digest_root / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    assert main(["build", "--daemon", "--root", str(digest_root), "--verbose"]) == 0
    output = capsys.readouterr().out
    assert "render" in output and "written" in output  # the stage times and summary came back
    assert running_pid(digest_root) == pid  # the same warm process built it
    assert daemon.ask(digest_root, "status")["builds"] == 2
    site = read_tree(digest_root / "site")
    assert b"refractory lupus" in site["articles/36109639/index.html"]
    assert site == clean_tree(digest_root)


def test_daemon_reports_bad_records_like_the_command_line_and_keeps_the_site(digest_root, capsys):
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    before = read_tree(digest_root / "site")
    (digest_root / "content/broken.yaml").write_text("pmid: 123\ntitle: [unclosed\n")
    assert main(["build", "--daemon", "--root", str(digest_root)]) == 1
    err = capsys.readouterr().err
    assert "content/broken.yaml:" in err and "Build failed" in err and "Traceback" not in err
    assert read_tree(digest_root / "site") == before
    (digest_root / "content/broken.yaml").unlink()
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0  # the daemon goes on


def test_stop_ends_the_daemon_and_status_says_so(digest_root, capsys):
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    pid = running_pid(digest_root)
    states = [digest_root / ".digest-cache" / name for name in ("records.pickle", "links.pickle", "plan.pickle")]
    assert not any(path.exists() for path in states)  # kept in memory while it runs
    assert main(["daemon", "status", "--root", str(digest_root)]) == 0
    assert f"process {pid}, 1 builds" in capsys.readouterr().out
    assert main(["daemon", "stop", "--root", str(digest_root)]) == 0
    assert wait_until_ended(pid)
    assert all(path.exists() for path in states)  # saved for the next process as it ended
    assert main(["daemon", "status", "--root", str(digest_root)]) == 0
    assert "No build daemon is running" in capsys.readouterr().out
    assert not (digest_root / ".digest-cache" / daemon.SOCKET_NAME).exists()


def test_a_client_running_other_code_replaces_the_daemon(digest_root):
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    old = running_pid(digest_root)
    connection = daemon._connect(daemon.socket_path(digest_root))
    with connection:
        reply, _ = daemon._exchange(connection, {"command": "build", "code": "other code", "options": {}})
    assert reply == {"restart": True}
    assert wait_until_ended(old)
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    assert running_pid(digest_root) not in (None, old)


def test_an_idle_daemon_and_one_whose_cache_folder_is_deleted_end(digest_root):
    command = [sys.executable, "-m", "generator", "daemon", "run", "--root", str(digest_root)]
    idle = subprocess.Popen([*command, "--idle", "0.5"], stdout=subprocess.DEVNULL)
    assert idle.wait(timeout=20) == 0
    assert running_pid(digest_root) is None

    orphaned = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while running_pid(digest_root) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_pid(digest_root) == orphaned.pid
    shutil.rmtree(digest_root / ".digest-cache")
    assert orphaned.wait(timeout=20) == 0


def test_environment_variable_turns_the_daemon_on_and_clean_builds_never_use_it(digest_root, monkeypatch):
    monkeypatch.setenv("DIGEST_DAEMON", "1")
    assert main(["build", "--root", str(digest_root), "-q", "--clean"]) == 0
    assert running_pid(digest_root) is None
    assert main(["build", "--root", str(digest_root), "-q", "--no-daemon"]) == 0
    assert running_pid(digest_root) is None
    assert main(["build", "--root", str(digest_root), "-q"]) == 0
    assert running_pid(digest_root) is not None


@pytest.fixture
def runtime_dir(monkeypatch):
    """A short XDG_RUNTIME_DIR (pytest's own folders can be too long for a socket path)."""
    folder = Path(tempfile.mkdtemp(prefix="rd-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_long_digest_paths_get_a_socket_in_a_folder_of_this_users_only(tmp_path, runtime_dir):
    short = tmp_path / "d"
    assert daemon.socket_path(short) == short.resolve() / ".digest-cache" / daemon.SOCKET_NAME or \
        len(os.fsencode(short.resolve() / ".digest-cache" / daemon.SOCKET_NAME)) > daemon.MAX_SOCKET_PATH
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    path = daemon.socket_path(deep)
    assert path is not None and path.parent == runtime_dir / f"review-digest-{os.getuid()}"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert daemon.socket_path(deep) == path and daemon.socket_path(deep.parent) != path
    path.parent.chmod(0o777)  # a folder others may write to: never used
    assert daemon.socket_path(deep) is None


def test_long_digest_paths_build_in_the_daemon(tmp_path, runtime_dir, capsys):
    root = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5, "digest")
    shutil.copytree(REPO / "content", root / "content")
    try:
        assert main(["build", "--daemon", "--root", str(root)]) == 0
        captured = capsys.readouterr()
        assert "Built 13 articles" in captured.out and "note:" not in captured.err
        assert running_pid(root) is not None
    finally:
        daemon.ask(root, "stop")


def test_builds_alternating_between_the_daemon_and_new_processes_equal_clean_builds(digest_root):
    record = digest_root / "content/autoimmunity/36109639.yaml"
    text = record.read_text()
    for step, (daemon_on, title) in enumerate([(True, "lupus A"), (False, "lupus B"), (True, "lupus C"),
                                               (True, "lupus D"), (False, "lupus E")]):
        record.write_text(text.replace("refractory systemic lupus", f"refractory {title}"))
        flag = "--daemon" if daemon_on else "--no-daemon"
        assert main(["build", flag, "--root", str(digest_root), "-q"]) == 0
        if step == 3:
            assert main(["daemon", "stop", "--root", str(digest_root)]) == 0  # it saves its state
        site = read_tree(digest_root / "site")
        assert f"refractory {title}".encode() in site["articles/36109639/index.html"]
        assert site == clean_tree(digest_root), step


def test_a_client_that_leaves_interrupts_the_build():
    import signal
    import socket

    ours, theirs = socket.socketpair()
    warm = daemon.Daemon(REPO, idle_seconds=60)
    previous = signal.getsignal(signal.SIGIO)
    try:
        warm._building = True
        warm._watch(ours)  # the client is there: nothing happens
        with pytest.raises(KeyboardInterrupt):
            theirs.close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
        warm._building = False
        ours.close()
    finally:
        signal.signal(signal.SIGIO, previous)


def test_a_missing_digest_folder_is_an_error_and_nothing_is_created(tmp_path, capsys):
    missing = tmp_path / "no-such-digest"
    assert main(["build", "--daemon", "--root", str(missing)]) == 1
    assert "content folder not found" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["build", "--no-daemon", "--root", str(missing)]) == 1
    assert not missing.exists()


def test_after_a_cold_build_the_daemon_fills_the_spare_tree_while_idle(digest_root):
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    live = (digest_root / "site" / ".digest-tree").read_text()
    spare = digest_root / ".site.spare"
    deadline = time.monotonic() + 20
    while not (spare / ".digest-tree").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (spare / ".digest-tree").read_text() == live  # the spare is a copy of the live tree
    assert read_tree(spare) == read_tree(digest_root / "site")
    record = digest_root / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    assert read_tree(digest_root / "site") == clean_tree(digest_root)


def test_a_long_running_session_does_not_keep_each_builds_garbage(digest_root):
    """serve and the daemon freeze what they keep; each build's objects in cycles (its renderer,
    its digest) were frozen with it and never collected: the process grew with every build."""
    import gc

    from generator.build import BuildSession
    from generator.load import collect_frozen_garbage, freeze_for_good

    config = load_config(digest_root)
    session = BuildSession(config=config, watched=False)
    record = digest_root / "content/autoimmunity/36109639.yaml"
    text = record.read_text()
    try:
        build(config, session=session)
        freeze_for_good()

        def frozen_after_builds(tidy: bool) -> list[int]:
            counts = []
            for step in range(6):
                record.write_text(text.replace("refractory systemic lupus", f"refractory lupus {step % 2}"))
                build(config, session=session)
                if tidy:
                    collect_frozen_garbage()
                counts.append(gc.get_freeze_count())
            return counts

        grown = frozen_after_builds(tidy=False)
        assert grown[-1] > grown[1] + 1000  # the leak this guards against: hundreds a build here
        tidied = frozen_after_builds(tidy=True)
        assert tidied[-1] - tidied[1] < 100, tidied
    finally:
        gc.unfreeze()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_a_build_freed_goes_back_to_the_system():
    """The C heap keeps what a build frees (its pages and pickled caches): the daemon held 609 MB
    after a new site title and an edit at 10,000 articles, 507 MB once it gave that back, as serve
    and the daemon now do after each build (`release_free_memory`)."""
    script = """
import os
from generator.load import release_free_memory
def resident():
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
pages, kept = [], []
for n in range(50000):  # 200 MB in the C heap, with what the process keeps in between
    pages.append(bytes(4000) + bytes([n % 256]))
    if n % 100 == 0:
        kept.append(bytearray(3000))  # so the heap cannot just shrink from its end
built = resident()
del pages
freed = resident()
release_free_memory()
print(built, freed, resident())
"""
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO).stdout
    built, freed, released = map(int, output.split())
    assert freed > built - (40 << 20)  # freed, but still this process's
    assert released < freed - (150 << 20)


def test_stop_force_signals_the_daemon_holding_the_lock(digest_root, capsys):
    assert main(["daemon", "stop", "--force", "--root", str(digest_root)]) == 0
    assert "No build daemon is running" in capsys.readouterr().out
    assert main(["build", "--daemon", "--root", str(digest_root), "-q"]) == 0
    pid = running_pid(digest_root)
    assert main(["daemon", "stop", "--force", "--root", str(digest_root)]) == 0
    assert f"Stopped the build daemon (process {pid})" in capsys.readouterr().out
    assert wait_until_ended(pid, 1)
    assert (digest_root / ".digest-cache" / "links.pickle").exists()  # SIGTERM: it saved its state



def started_on_a_built_digest(root: Path):
    """A daemon's session whose first build found nothing changed (so it loaded nothing)."""
    from generator.build import BuildSession, settle_session
    from generator.input_check import InputCheck

    config = load_config(root)
    build(config)
    session = BuildSession(config=config, watched=False, saves_later=True, input_check=InputCheck())
    report = build(config, session=session)
    assert list(report.stage_seconds) == ["check inputs"] and session.load_state is None
    settle_session(session)
    return config, session


def test_a_daemon_started_on_a_built_digest_loads_it_while_idle_for_its_first_edit(digest_root, monkeypatch):
    """While idle, the daemon loads and links the digest as an edit would, so its first edit makes
    only the similar lists that edit touches (every list otherwise); the bytes are a clean build's."""
    from generator import link
    from generator.build import warm_session

    config, session = started_on_a_built_digest(digest_root)
    assert warm_session(session)
    assert not warm_session(session)  # once
    made: list[str] = []
    real = link._merge_entries
    monkeypatch.setattr(link, "_merge_entries", lambda article, *rest: made.append(article.id) or real(article, *rest))
    record = digest_root / "content/autoimmunity/36109639.yaml"
    text = record.read_text()
    assert "notes:" in text
    record.write_text(text.replace("notes:", "notes: |\n  Read at the journal club.\n  Earlier:", 1))
    report = build(config, session=session)
    assert 0 < len(made) < report.articles, made
    monkeypatch.undo()
    assert read_tree(digest_root / "site") == clean_tree(digest_root)


def test_what_the_daemon_loads_while_idle_publishes_nothing(digest_root):
    """Inputs changed before the daemon loads them: it publishes nothing; its next build does."""
    from generator.build import warm_session

    config, session = started_on_a_built_digest(digest_root)
    before = read_tree(digest_root / "site")
    record = digest_root / "content/autoimmunity/36109639.yaml"
    record.write_text(record.read_text().replace("refractory systemic lupus", "refractory lupus"))
    assert warm_session(session)
    assert read_tree(digest_root / "site") == before
    assert build(config, session=session).written
    assert read_tree(digest_root / "site") == clean_tree(digest_root)


def test_a_session_drops_its_states_cache_bytes_and_still_saves_them_whole(digest_root, monkeypatch):
    """A process that builds again holds its load and link states unpickled: the cache files' bytes
    read with them only doubled its memory (90 MB at 10,000 articles), so they are dropped. What the
    daemon saves when it ends is then pickled again, whole: the next process reads every record
    back from it and parses only the file edited since."""
    from generator import load
    from generator.build import save_session, warm_session

    config, session = started_on_a_built_digest(digest_root)
    assert warm_session(session)
    # (no article, nor any section of the links the session holds, is held as the cache file's bytes too)
    links = session.link_state
    assert not any(session.load_state._blobs) and links._blobs.keys() <= {"slugs", "terms", "names_digests", "names_memo"}
    assert all(getattr(links, f"_{name}") is None for name in links._blobs) and links._output is not None
    save_session(session)  # (as when the daemon ends)
    saved_sections = load_with_parts(digest_root / ".digest-cache/links.pickle")[3]
    assert {"digests", "index", "output"} <= saved_sections.keys()  # what the next process links from
    other = digest_root / "content/autoimmunity/37353278.yaml"
    other.write_text(other.read_text().replace("myasthenia gravis (MG-001)", "MG (MG-001)"))
    parsed = []
    real = load.records_from_bytes
    monkeypatch.setattr(load, "records_from_bytes", lambda path, shown, data: parsed.append(shown) or real(path, shown, data))
    build(config)  # a new process's build, from what the session saved
    assert parsed == ["content/autoimmunity/37353278.yaml"]
    monkeypatch.undo()
    assert read_tree(digest_root / "site") == clean_tree(digest_root)
