"""`digest build --daemon`: one process per digest kept warm between builds.

A new `digest build` process spends most of an edit's time making again what the last build had:
at 10,000 articles it unpickles the articles, the similarity index and the plan's keys and walks
them all before it renders the 40 pages the edit changed (3 of 4.5 s). The daemon keeps them in
memory as `digest serve` does (`build.BuildSession`), so a build costs what changed, as Gradle's
daemon and mypy's `dmypy` do. Its builds write the bytes any other build writes.

- One daemon per digest folder. It holds `.digest-cache/daemon.lock` while it lives, listens on
  `.digest-cache/daemon.sock` (a Unix socket only its owner may open) and logs to `daemon.log`.
- `digest build --daemon` (or DIGEST_DAEMON=1) sends its options there, starting the daemon when
  none answers, prints what the build prints as it comes and exits with the build's code. It
  builds in its own process instead when no daemon can be had (socket path too long, no Unix
  sockets, the daemon died), saying so.
- A client running other code than the daemon's (an upgrade, an edited checkout) stops it and
  starts a new one. The daemon ends after `--idle` seconds without a build, on `digest daemon
  stop`, on SIGTERM, or once its socket is gone (`.digest-cache/` deleted).
- A client that goes away (Ctrl-C) interrupts its build, as Ctrl-C interrupts any build: the
  previous site stays, and the daemon starts its next build from the cache files.
- It runs no threads, so that its builds may fork as a new process's do (the spare tree's filler).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generator.cache_files import CACHE_DIR, files_stamp
from generator.errors import DigestError

SOCKET_NAME = "daemon.sock"
LOCK_NAME = "daemon.lock"
LOG_NAME = "daemon.log"
MAX_LOG_BYTES = 1 << 20  # a longer log is started afresh
MAX_SOCKET_PATH = 100  # bytes; Linux allows 107 in sun_path
START_SECONDS = 20.0  # how long a client waits for a daemon it started to answer
STOP_SECONDS = 120.0  # how long `digest daemon stop` waits for it to save its state and end
CHECK_SECONDS = 1.0  # how often an idle daemon checks that its socket and lock file are still its own


def code_stamp() -> str:
    """Say which code a process runs: this package's files, the interpreter and its path."""
    package = Path(__file__).parent
    stamp = (sys.version, sys.executable, files_stamp(sorted(package.rglob("*.py"))))
    return hashlib.blake2b(repr(stamp).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def socket_path(root: Path) -> Path | None:
    """Return where the daemon of the digest in `root` listens: in its cache folder, or, when that
    path is too long for a Unix socket, in a folder of this user's only, under a name drawn from
    the digest's path. None when the system has no Unix sockets or no such folder."""
    root = root.resolve()
    path = root / CACHE_DIR / SOCKET_NAME
    if not hasattr(socket, "AF_UNIX"):
        return None
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    folder = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"review-digest-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        found = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        return None  # not a folder of this user's alone: another user could take the name
    path = folder / (hashlib.blake2b(os.fsencode(root), digest_size=12).hexdigest() + ".sock")
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


# -- the client: `digest build --daemon` ----------------------------------------------------------


def build_in_daemon(args: argparse.Namespace) -> int | None:
    """Have the digest's daemon run this build; return its exit code, or None to build here."""
    if not args.root.is_dir():
        return None  # the build says what is missing
    path = socket_path(args.root)
    log = args.root.resolve() / CACHE_DIR / LOG_NAME
    if path is None:
        _tell(args, "no Unix socket for a build daemon can be made here; building in this process")
        return None
    request = {"command": "build", "code": code_stamp(), "options": {
        "out": args.out, "base_url": args.base_url, "strict": args.strict, "jobs": args.jobs,
        "verbose": args.verbose, "quiet": args.quiet, "terminal": sys.stderr.isatty()}}
    for _ in range(3):  # a daemon running other code stops; a new one starts
        connection = _connect(path) or _start_daemon(args.root, path)
        if connection is None:
            _tell(args, f"cannot start the build daemon (see {log}); building in this process")
            return None
        with connection:
            reply, heard = _exchange(connection, request)
        if reply is None and heard:
            _tell(args, f"the build daemon stopped during the build (see {log}); "
                        "building in this process")
            return None
        if reply is not None and "exit" in reply:
            return int(reply["exit"])
        _wait_until_gone(path)  # it said it stops (other code), or ended before it heard (idle)
    _tell(args, f"the build daemon did not answer (see {log}); building in this process")
    return None


def _tell(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"note: {message}", file=sys.stderr)


def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(os.fspath(path))
    except OSError:
        connection.close()
        return None
    return connection


def _start_daemon(root: Path, path: Path) -> socket.socket | None:
    """Start a daemon for `root`, detached from this terminal, and connect to it."""
    cache = root.resolve() / CACHE_DIR
    # This very package first (not one that happens to be in the current folder): from the cache
    # folder, which holds none, with the folder holding this one on the path.
    here = os.fspath(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    try:
        cache.mkdir(exist_ok=True)
        log_path = cache / LOG_NAME
        fresh = not log_path.exists() or log_path.stat().st_size > MAX_LOG_BYTES
        with open(log_path, "wb" if fresh else "ab") as log:
            subprocess.Popen([sys.executable, "-m", "generator", "daemon", "run", "--root", os.fspath(root.resolve())],
                             cwd=cache, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, close_fds=True)
    except OSError:  # a read-only digest folder, no interpreter
        return None
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        connection = _connect(path)
        if connection is not None:
            return connection
        time.sleep(0.02)
    return None


def _wait_until_gone(path: Path) -> None:
    """Wait (briefly) for a daemon that said it stops to close its socket."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        connection = _connect(path)
        if connection is None:
            return
        connection.close()
        time.sleep(0.02)


def _exchange(connection: socket.socket, request: dict) -> tuple[dict | None, bool]:
    """Send `request` and print the output the daemon streams back. Return its last message (None
    when the connection ends without one) and whether anything came back at all."""
    streams = {"out": sys.stdout, "err": sys.stderr}
    heard = False
    try:
        connection.sendall(json.dumps(request).encode("utf-8") + b"\n")
        with connection.makefile("rb") as replies:
            for line in replies:
                heard = True
                message = json.loads(line)
                if "text" not in message:
                    return message, True
                stream = streams.get(message.get("stream"), sys.stderr)
                stream.write(message["text"])
                stream.flush()
    except (OSError, ValueError):
        pass
    return None, heard


def ask(root: Path, command: str) -> dict | None:
    """Send `command` (status, stop) to the digest's daemon; None when none is running."""
    path = socket_path(root)
    connection = _connect(path) if path is not None else None
    if connection is None:
        return None
    with connection:
        return _exchange(connection, {"command": command})[0]


# -- the daemon -----------------------------------------------------------------------------------


class _Channel(io.TextIOBase):
    """A text stream whose writes go to the client as they are made (stdout or stderr); a terminal
    when the client's is (so that a long build shows its progress line there)."""

    def __init__(self, connection: socket.socket, name: str, terminal: bool = False):
        self.connection, self.name, self.terminal = connection, name, terminal

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.terminal

    def write(self, text: str) -> int:
        if text:
            _send(self.connection, {"stream": self.name, "text": text})
        return len(text)


def _send(connection: socket.socket, message: dict) -> None:
    try:
        connection.sendall(json.dumps(message).encode("utf-8") + b"\n")
    except OSError:
        pass  # the client went away; its watcher interrupts the build


class Daemon:
    """Builds one digest for the clients of its socket, one at a time, with one session."""

    def __init__(self, root: Path, idle_seconds: float):
        self.root = root.resolve()
        self.idle_seconds = idle_seconds
        self.code = code_stamp()
        self.session: Any = None
        self.builds = 0
        self.garbage = False  # whether a build since the last collection left frozen garbage
        self.last_used = time.monotonic()
        self.started = time.time()
        self._building = False

    def run(self) -> int:
        """Serve builds until idle, stopped or replaced; 0, or 1 when the socket cannot be had."""
        path = socket_path(self.root)
        if path is None:
            print(f"error: the socket path for {self.root} is too long", file=sys.stderr)
            return 1
        cache = self.root / CACHE_DIR
        try:
            cache.mkdir(exist_ok=True)
            lock = open(cache / LOCK_NAME, "a+b")
        except OSError as exc:
            print(f"error: cannot use {cache}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        with lock:
            import fcntl

            deadline = time.monotonic() + START_SECONDS
            while True:  # a daemon that was stopped may still be saving its state
                try:
                    fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        print(f"a build daemon for {self.root} is running already", file=sys.stderr)
                        return 0
                    time.sleep(0.05)
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n".encode("ascii"))  # for `digest daemon stop --force`
            lock.flush()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a daemon that was killed
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            previous_mask = os.umask(0o177)
            try:
                listener.bind(os.fspath(path))
            finally:
                os.umask(previous_mask)
            listener.listen(16)
            listener.settimeout(CHECK_SECONDS)
            ours = {path: os.stat(path).st_ino, cache / LOCK_NAME: os.fstat(lock.fileno()).st_ino}
            signal.signal(signal.SIGTERM, self._terminate)
            # A client that leaves interrupts its build as Ctrl-C would (see _watch), even when this
            # process was started with SIGINT ignored (from a background job).
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} build daemon {os.getpid()} for {self.root}", flush=True)
            leaving = "gone"
            try:
                leaving = self._serve(listener, ours)
            except SystemExit:  # SIGTERM
                leaving = "stopped"  # (with no session if it came during a build)
            finally:
                listener.close()
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == ours[path]:
                        path.unlink()
            if leaving == "stopped" and self.session is not None:
                # For the next process: without this, its first build makes again what this one
                # learned since its first (the exports' index: 30,000 files read at 10,000 articles).
                from generator.build import save_session

                save_session(self.session)
        return 0

    def _terminate(self, *_: Any) -> None:
        if self._building:
            self.session = None  # stopped half-way: nothing of it is saved
        sys.exit(0)

    def _serve(self, listener: socket.socket, ours: dict[Path, int]) -> str:
        """Answer clients until stopped or idle ("stopped"), told of other code ("replaced"), or its
        socket or lock file is gone or replaced ("gone": the cache folder deleted, so no client would
        find this daemon any more)."""
        while True:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                if not _still_ours(ours):
                    return "gone"
                if time.monotonic() - self.last_used > self.idle_seconds:
                    return "stopped"
                if self.garbage:  # a second without a request: clean up after the last build
                    from generator.load import collect_frozen_garbage

                    collect_frozen_garbage()
                    self.garbage = False
                continue
            with connection:
                try:
                    leaving = self._answer(connection)
                except KeyboardInterrupt:  # its client left just as its build ended (see _watch)
                    self.session, leaving = None, ""
            if leaving:
                return leaving
            self.last_used = time.monotonic()

    def _answer(self, connection: socket.socket) -> str:
        """Answer one request; return why the daemon ends after it, or "" to go on."""
        connection.settimeout(10)
        try:
            with connection.makefile("rb") as lines:
                request = json.loads(lines.readline() or b"{}")
        except (OSError, ValueError):
            return ""
        connection.settimeout(None)
        command = request.get("command")
        if command == "status":
            _send(connection, {"pid": os.getpid(), "root": os.fspath(self.root), "builds": self.builds,
                               "idle_seconds": round(time.monotonic() - self.last_used, 1),
                               "started": self.started, "memory_mb": _resident_mb()})
            return ""
        if command == "stop":
            _send(connection, {"stopped": os.getpid()})
            return "stopped"
        if command != "build":
            _send(connection, {"error": f"unknown command {command!r}"})
            return ""
        if request.get("code") != self.code:
            _send(connection, {"restart": True})  # the client runs other code: it starts a new daemon
            return "replaced"
        _send(connection, {"exit": self._build(connection, request.get("options") or {})})
        connection.close()
        self._settle()
        return ""

    def _build(self, connection: socket.socket, options: dict) -> int:
        """Run `digest build` with `options`, its output going to the client; its exit code."""
        from generator.cli import run_build, run_command

        args = argparse.Namespace(root=self.root, command="build", clean=False, daemon=False,
                                  out=options.get("out"), base_url=options.get("base_url"),
                                  strict=bool(options.get("strict")), jobs=options.get("jobs"),
                                  verbose=bool(options.get("verbose")), quiet=bool(options.get("quiet")))
        out, err = _Channel(connection, "out"), _Channel(connection, "err", bool(options.get("terminal")))
        crashed = False
        self._building = True
        try:
            self._watch(connection)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = run_command(args, lambda parsed: run_build(parsed, self._session_for))
        except KeyboardInterrupt:  # the client left (or Ctrl-C in a foreground daemon)
            code = 130
        except Exception:  # a bug: report it like the command line would, and start afresh
            import traceback

            _send(connection, {"stream": "err", "text": traceback.format_exc()})
            code, crashed = 1, True
        finally:
            signal.signal(signal.SIGIO, signal.SIG_IGN)
            self._building = False
        self.builds += 1
        self.garbage = True
        if crashed or code == 130:
            self.session = None  # a build stopped half-way: the next one starts from the cache files
        return code

    def _settle(self) -> None:
        """Once the client has its answer: write what the build left to write (its fragments, see
        `BuildSession.saves_later`), trust the content files it saw too soon after they changed
        (both `build.settle_session`), and after a build that left the spare tree unknown (a cold
        one), fill it now rather than during the next build; after a first build that found nothing
        changed, load the digest as an edit's build would (`build.warm_session`). (What the session
        keeps was frozen by its first build, `build._build`; the garbage is collected a second
        later, see `_serve`.)"""
        if self.session is None or self.session.config is None:
            return
        from generator.build import fill_spare_tree, settle_session, warm_session
        from generator.load import release_free_memory

        try:
            settle_session(self.session)  # what the build left for once its client has the answer
        except Exception as exc:  # noqa: BLE001 - a cache: the next build makes what it lacks
            print(f"could not save what the build learned: {exc!r}", flush=True)
        try:
            fill_spare_tree(self.session.config)
        except Exception as exc:  # noqa: BLE001 - an optimisation: the next build fills it itself
            print(f"could not prepare the spare tree: {exc!r}", flush=True)
        try:
            warm_session(self.session)  # a first build that found nothing changed loaded nothing
        except DigestError:
            pass  # the inputs have an error: the next build reports it to its client
        except Exception as exc:  # noqa: BLE001 - an optimisation: the next build loads what it needs
            print(f"could not load the digest ahead of the next build: {exc!r}", flush=True)
        release_free_memory()  # what the build freed: the next one's peak starts lower

    def _session_for(self, config: Any) -> Any:
        from generator.build import new_session
        from generator.input_check import InputCheck

        if self.session is None or self.session.config != config:
            # Each build checks its inputs (those the kernel says changed), and leaves saving its
            # fragments to `_settle`.
            replacing, self.session = self.session, None
            self.session = new_session(replacing, config=config, watched=False, saves_later=True,
                                       input_check=InputCheck())
        return self.session

    def _watch(self, connection: socket.socket) -> None:
        """Interrupt the build (KeyboardInterrupt) when its client disconnects. The kernel signals
        (SIGIO) when the connection becomes readable, and a client sends nothing after its request:
        readable means gone. A signal, not a thread: a build forks helpers (the filler of the spare
        tree) only in a process without threads."""
        import fcntl

        def check(*_: Any) -> None:
            try:
                left = not connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                left = True
            if left and self._building:
                raise KeyboardInterrupt

        signal.signal(signal.SIGIO, check)
        fcntl.fcntl(connection.fileno(), fcntl.F_SETOWN, os.getpid())
        fcntl.fcntl(connection.fileno(), fcntl.F_SETFL, fcntl.fcntl(connection.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
        check()  # it may have left already


def _stop_by_signal(root: Path) -> int:
    """`digest daemon stop --force`: end the daemon that holds the lock with SIGTERM (its build, if
    any, stops as on Ctrl-C), then SIGKILL if it has not ended within 10 s: for one that does not
    answer. The pid comes from its lock file, and only while a process holds the lock."""
    import fcntl

    lock_path = root.resolve() / CACHE_DIR / LOCK_NAME
    try:
        with open(lock_path, "r+b") as lock:
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: a daemon runs
                pid = int(lock.read().decode("ascii").strip() or 0)
            else:
                pid = 0
    except (OSError, ValueError):
        pid = 0
    if not pid:
        print(f"No build daemon is running for {root.resolve()}.")
        return 0
    for sig, seconds in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if not _alive(pid):
            print(f"Stopped the build daemon (process {pid}{', killed' if sig == signal.SIGKILL else ''}).")
            return 0
    print(f"error: process {pid} did not end", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # our child when this process started it: reaped
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def _still_ours(files: dict[Path, int]) -> bool:
    try:
        return all(os.stat(path).st_ino == inode for path, inode in files.items())
    except OSError:
        return False


def _resident_mb() -> float | None:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_daemon(args: argparse.Namespace) -> int:
    """`digest daemon status|stop|run`."""
    if args.action == "run":
        return Daemon(args.root, args.idle).run()
    if args.action == "stop" and args.force:
        return _stop_by_signal(args.root)
    reply = ask(args.root, args.action)
    if reply is None:
        print(f"No build daemon is running for {args.root.resolve()}.")
        return 0
    if args.action == "stop":
        pid = int(reply.get("stopped", 0))
        deadline = time.monotonic() + STOP_SECONDS
        while pid and time.monotonic() < deadline and _alive(pid):  # it saves its state first
            time.sleep(0.05)
        print(f"Stopped the build daemon (process {pid}).")
        return 0
    memory = f", {reply['memory_mb']:.0f} MB" if reply.get("memory_mb") is not None else ""
    print(f"Build daemon for {reply.get('root')}: process {reply.get('pid')}, {reply.get('builds')} builds, "
          f"idle {reply.get('idle_seconds')} s{memory}.")
    return 0
