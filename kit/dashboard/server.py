"""The dashboard's web server (tornado, which Jupyter already brings): read-only, token-gated.

    browser ── GET /?token=T ──▶ Page: sets the cookie, serves static/index.html
            ── GET /static/* ──▶ Static (the page's own JS and CSS)
            ── WS  /ws ────────▶ Push: a full frame, then what changed, twice a second
                                 (task rows and bars only to a page showing them)
            ── GET /api/state ─▶ everything, as JSON (for scripts and tests)
            ── GET /api/stack/<worker id> ─▶ py-spy dump of a worker, read by its node
            ── GET /timeline.json ─▶ Chrome trace of the task stream (Perfetto)
            ── GET /metrics ───▶ Prometheus text (also with "Authorization: Bearer T")

Every handler checks the token before anything else (``Base.prepare``): without
the cluster's token, its view token or the cookie a ``?token=`` link set, every
path (unknown ones too) answers ``403`` with the same few bytes and no server
header. Only GET is served; websockets must come from the page's own origin.
The collector polls the head only while a page is connected (or a scrape comes),
so an unwatched dashboard costs the head nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time

import tornado.httpserver
import tornado.web
import tornado.websocket

from . import auth, metrics, trace
from .collector import Collector

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
TICK = 0.5  # seconds between pushes to the pages
PANELS = ("overview", "stream", "tasks", "actors", "workers", "drivers")
FORBIDDEN = b"403 Forbidden\n"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'",
}


class Board:
    """The dashboard's state shared by the handlers: the gate, the collector, the pages."""

    def __init__(self, gate: auth.Gate, collector: Collector, cookie_name: str):
        self.gate = gate
        self.collector = collector
        self.cookie_name = cookie_name
        self.pages: set = set()  # open websockets
        self.files = _load_static()
        self.view: dict = {}
        self.viewed = 0.0
        self.dead = None  # why the head went away

    def fresh(self, max_age: float = 1.0) -> None:
        """Poll the head unless the last poll is newer than ``max_age`` seconds."""
        now = time.time()
        if now - self.collector.polled >= max_age:
            self.collector.poll(now)
            self.view = self.collector.view()
            self.viewed = now


def _load_static() -> dict:
    out = {}
    for name in os.listdir(STATIC):
        with open(os.path.join(STATIC, name), "rb") as f:
            out[name] = f.read()
    return out


class Base(tornado.web.RequestHandler):
    """Checks the token first; every refusal is the same 403."""

    def initialize(self, board: Board):
        self.board = board

    def set_default_headers(self):
        self.clear_header("Server")
        for k, v in SECURITY_HEADERS.items():
            self.set_header(k, v)

    def prepare(self):
        if not self.authorized():
            raise tornado.web.HTTPError(403)

    def authorized(self) -> bool:
        gate = self.board.gate
        given = self.get_query_argument("token", None)
        header = self.request.headers.get("Authorization", "")
        if given is None and header.lower().startswith("bearer "):
            given = header[7:].strip()
        if given is not None:
            if not gate.token_ok(given):
                return False
            self.set_cookie(
                self.board.cookie_name, gate.cookie, httponly=True, samesite="Lax", path="/"
            )
            return True
        return gate.cookie_ok(self.get_cookie(self.board.cookie_name))

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/plain")
        self.finish(FORBIDDEN if status_code == 403 else f"{status_code}\n".encode())

    def send_json(self, obj):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj, separators=(",", ":")))


class Page(Base):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.board.files["index.html"])


class Static(Base):
    def get(self, name):
        data = self.board.files.get(name)
        if data is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", TYPES.get(os.path.splitext(name)[1], "text/plain"))
        self.finish(data)


class State(Base):
    def get(self):
        b = self.board
        b.fresh(0.0)
        c = b.collector
        self.send_json(
            {"t": time.time(), **b.view, "rows": c.rows_since(0), "bars": c.bars_since(0)}
        )


class Stack(Base):
    async def get(self, wid):
        b = self.board
        b.fresh(0.5)
        w = next((w for w in b.view.get("workers", ()) if w["id"] == wid), None)
        if w is None:
            raise tornado.web.HTTPError(404)
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, b.collector.stack, bytes.fromhex(wid))
        self.send_json({"id": wid, "pid": w["pid"], "stack": text})


class Timeline(Base):
    def get(self):
        b = self.board
        b.fresh(0.0)
        c = b.collector
        pids = {bytes.fromhex(w["id"]): w["pid"] for w in b.view.get("workers", ())}
        body = trace.chrome_trace(c.model.bars, c.tags, pids)
        self.set_header("Content-Disposition", 'attachment; filename="kit-timeline.json"')
        self.send_json(body)


class Metrics(Base):
    def get(self):
        b = self.board
        b.fresh(1.0)
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.render(lambda: b.view))


class NotFound(Base):
    def get(self, *args):
        raise tornado.web.HTTPError(404)


class Push(tornado.websocket.WebSocketHandler):
    """A page's live feed: frames of what changed (sections, task rows, bars)."""

    def initialize(self, board: Board):
        self.board = board
        self.sent: dict = {}
        self.rows = 0
        self.bars = 0
        self.panel = None  # the panel the page shows (None: not said, send everything)

    def set_default_headers(self):
        self.clear_header("Server")

    def prepare(self):
        if not Base.authorized(self):  # the same check as every other handler
            raise tornado.web.HTTPError(403)

    def write_error(self, status_code, **kwargs):
        Base.write_error(self, status_code)

    def open(self):
        self.board.pages.add(self)
        self.board.fresh(0.0)
        self.push()

    def on_close(self):
        self.board.pages.discard(self)

    def on_message(self, message):
        """A page says which panel it shows: only that panel's rows or bars are sent to it.
        Nothing a page says has any other effect (the dashboard is read-only)."""
        try:
            panel = json.loads(message).get("panel")
        except (ValueError, AttributeError):
            return
        if panel in PANELS and panel != self.panel:
            self.panel = panel
            self.rows = self.bars = 0  # it shows them again: send what is kept
            self.sent.pop("functions", None)

    def push(self):
        b = self.board
        c = b.collector
        frame: dict = {"t": b.viewed}
        panel = self.panel
        for k, v in b.view.items():
            if self.sent.get(k) != v:
                frame[k] = self.sent[k] = v
        if panel in (None, "tasks"):
            rows = c.rows_since(self.rows)
            if rows:
                frame["rows"] = rows
                self.rows = max(self.rows, rows[-1][9])
        if panel in (None, "stream"):
            bars = c.bars_since(self.bars)
            if bars:
                frame["bars"] = bars
                self.bars = bars[-1][0]
        frame["window"] = c.model.window  # sent every tick: running bars grow with "t"
        self.write_message(json.dumps(frame, separators=(",", ":")))


def make_app(board: Board) -> tornado.web.Application:
    """The routes; every handler gets ``board``."""
    kw = {"board": board}
    return tornado.web.Application(
        [
            (r"/", Page, kw),
            (r"/static/([\w.-]+)", Static, kw),
            (r"/ws", Push, kw),
            (r"/api/state", State, kw),
            (r"/api/stack/([0-9a-f]+)", Stack, kw),
            (r"/timeline.json", Timeline, kw),
            (r"/metrics", Metrics, kw),
        ],
        default_handler_class=NotFound,
        default_handler_args=kw,
        websocket_ping_interval=20,
        log_function=lambda handler: None,  # no access log: a refused request says nothing
    )


async def serve(board: Board, sock: socket.socket) -> None:
    """Serve until the head goes away."""
    server = tornado.httpserver.HTTPServer(make_app(board), xheaders=False)
    sock.setblocking(False)  # tornado accepts until EAGAIN: a blocking socket would hang
    server.add_sockets([sock])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def ticks():
        while not stop.is_set():
            await asyncio.sleep(TICK)
            if board.collector.client.closed or board.collector.client.dead_reason:
                stop.set()
                break
            if not board.pages:
                continue
            try:
                board.fresh(0.0)
            except Exception as e:  # the head went away: the dashboard goes too
                board.dead = repr(e)
                stop.set()
                break
            for page in list(board.pages):
                try:
                    page.push()
                except tornado.websocket.WebSocketClosedError:
                    board.pages.discard(page)

    task = asyncio.create_task(ticks())
    await stop.wait()
    task.cancel()
    server.stop()


def main(cfg: dict, fd: int) -> None:
    """Serve on the listening socket ``fd`` (``kit.dashboard.launch.run`` calls this when
    the first page comes)."""
    os.environ["KIT_DIRECT"] = "0"  # it never submits: no lease machinery
    sock = socket.socket(fileno=fd)
    from ..client import Client, host_id

    client = Client(
        cfg["head"],
        cfg["token"],
        "driver",
        info={"dashboard": True, "log_to_driver": True, "name": "dashboard"},
        encrypt=bool(cfg.get("encrypt")),
    )
    collector = Collector(client, host_id())
    board = Board(auth.Gate(cfg["token"]), collector, f"kit-dashboard-{cfg['port']}")
    try:
        asyncio.run(serve(board, sock))
    finally:
        collector.close()
        client.close(notify=board.dead is None)
        if board.dead:
            print(f"kit dashboard: stopped ({board.dead})", file=sys.stderr)
