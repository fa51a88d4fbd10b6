"""Reload open pages after a rebuild (Server-Sent Events) and show build errors over the page.

Only the dev server uses this: the snippet is added to HTML as it is served, never written into
the output folder, so `site/` stays exactly what `digest build` makes.

Each page is served with the build version it shows. When its event stream connects, a newer
version triggers a reload at once, so a build that finishes between the page load and the
stream's connection is not missed (MkDocs livereload does the same with its epoch). The version
starts with a random boot id, so pages left open across a server restart reload too.
"""

from __future__ import annotations

import html
import re
import secrets
import threading
from typing import Sequence

from generator.errors import Problem

EVENTS_PATH = "/__digest__/events"
KEEPALIVE_SECONDS = 15.0  # a comment line this often; a write is how a vanished client is noticed
OVERLAY_ID = "digest-error-overlay"


class ReloadBroker:
    """Hold the current build version and wake every event stream when it changes."""

    def __init__(self) -> None:
        self._boot = secrets.token_hex(4)
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def version(self) -> str:
        with self._cond:
            return self._version()

    def _version(self) -> str:
        return f"{self._boot}-{self._count}"

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self) -> str:
        """Start a new version (a build finished, well or badly); return it."""
        with self._cond:
            self._count += 1
            self._cond.notify_all()
            return self._version()

    def close(self) -> None:
        """Release every waiting stream, so the server can stop at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for_change(self, since: str, timeout: float) -> str | None:
        """Return the current version once it differs from `since`; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._version() != since, timeout)
            if self._closed:
                return None
            current = self._version()
            return current if current != since else None


def event_message(event: str, data: str) -> bytes:
    """Return one Server-Sent Events message."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode("utf-8")


SCRIPT_PATH = "/__digest__/livereload.js"
STYLE_PATH = "/__digest__/overlay.css"

# Served as files, not inline, so pages keep the theme's Content-Security-Policy (script-src 'self').
CLIENT_JS = """(() => {
  // Only visible tabs keep a stream open: browsers allow about six connections per host, and hidden
  // tabs holding them would stall every other request. A tab that becomes visible again reconnects
  // with the version it shows, so a build it missed reloads it at once.
  const version = document.currentScript.dataset.version;
  let source = null;
  const open = () => {
    if (source) return;
    // The page it shows: a rebuild renders open pages first and reloads them before the rest is done.
    source = new EventSource("%s?since=" + encodeURIComponent(version) +
                             "&page=" + encodeURIComponent(location.pathname));
    source.addEventListener("reload", () => { source.close(); location.reload(); });
  };
  const close = () => { if (source) { source.close(); source = null; } };
  document.addEventListener("visibilitychange", () => (document.hidden ? close() : open()));
  if (!document.hidden) open();
})();
""" % EVENTS_PATH

OVERLAY_CSS = """#%s { position: fixed; inset: 0; z-index: 2147483647; overflow: auto; margin: 0; padding: 2rem;
  background: rgba(24, 24, 27, .96); color: #fafafa; text-align: left;
  font: 15px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
#%s .digest-overlay-title { margin: 0 0 .5rem; font-size: 1.3rem; font-weight: bold; color: #fca5a5; }
#%s .digest-overlay-lead { margin: 0 0 1rem; }
#%s ol { margin: 0; padding-left: 1.5rem; }
""" % ((OVERLAY_ID,) * 4)


def client_script(version: str) -> str:
    """Return the tag that loads the reload script for a page showing build `version`."""
    return f'<script src="{SCRIPT_PATH}" data-digest-livereload data-version="{html.escape(version)}"></script>\n'


def error_overlay(problems: Sequence[Problem]) -> str:
    """Return a full-window panel listing the build errors as `path:line: message` lines."""
    errors = sum(p.severity == "error" for p in problems) or len(problems)
    items = "\n".join(f"<li><code>{html.escape(p.format())}</code></li>" for p in problems)
    return (
        f'<link rel="stylesheet" href="{STYLE_PATH}">\n'
        f'<div id="{OVERLAY_ID}" role="alert">\n'
        # Not a heading: the page underneath keeps its own outline (one <h1>).
        f'<p class="digest-overlay-title">Build failed: {errors} error{"s" * (errors != 1)}</p>\n'
        '<p class="digest-overlay-lead">Fix the file and save: this page reloads by itself. '
        "Behind this panel is the last site that built.</p>\n"
        f"<ol>\n{items}\n</ol>\n</div>\n"
    )


def standalone_page(title: str, body: str) -> bytes:
    """Return a minimal HTML page, for when the site has no page to show (e.g. no 404.html yet)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode("utf-8")


_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)


def inject(page: bytes, snippet: str) -> bytes:
    """Insert `snippet` before the last `</body>`, or at the end when the page has none."""
    matches = list(_BODY_END.finditer(page))
    data = snippet.encode("utf-8")
    if not matches:
        return page + data
    at = matches[-1].start()
    return page[:at] + data + page[at:]
