"""A user of the app, over real HTTP and WebSockets: what a browser sends, nothing more."""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager

import httpx
import websockets

from .servers import AppServer

PASSWORD = "correct-horse-battery-9"


# The session settings drawer's fields, as a new session has them (tests change what they need).
SETTINGS_FORM = {
    "title": "Test session",
    "provider": "simulator",
    "model": "gpt-4o-mini",
    "api": "chat",
    "system_prompt": "",
    "temperature": "",
    "max_output_tokens": "",
    "reasoning_effort": "",
    "cache_scope": "session",
}


class UserClient:
    def __init__(self, server: AppServer, username: str | None = None):
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, follow_redirects=False, timeout=15.0)
        self.username = username

    # --- plumbing -------------------------------------------------------------------------
    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict | None = None, *, htmx: bool = True) -> httpx.Response:
        if "csrftoken" not in self.http.cookies:
            self.http.get("/login/")
        headers = {"X-CSRFToken": self.http.cookies["csrftoken"]}
        if htmx:
            headers["HX-Request"] = "true"
        return self.http.post(path, data=data or {}, headers=headers)

    # --- accounts and keys ------------------------------------------------------------------
    def signup(self, username: str) -> "UserClient":
        self.username = username
        self.http.get("/signup/")
        resp = self.post("/signup/", {"username": username, "password1": PASSWORD, "password2": PASSWORD}, htmx=False)
        assert resp.status_code == 302, resp.text[:2000]
        return self

    def add_key(self, provider: str, key: str, *, session_only: bool = False) -> httpx.Response:
        data = {"api_key": key}
        if session_only:
            data["session_only"] = "on"
        return self.post(f"/keys/{provider}/", data)

    # --- sessions -----------------------------------------------------------------------------
    def new_session(self, **settings) -> tuple[int, int]:
        resp = self.post("/sessions/new/", htmx=False)
        session_id = int(re.search(r"/sessions/(\d+)/", resp.headers["location"]).group(1))
        branch_id = self.branch_of(session_id)
        if settings:
            self.update_settings(session_id, **settings)
        return session_id, branch_id

    def branch_of(self, session_id: int) -> int:
        resp = self.get(f"/sessions/{session_id}/")
        assert resp.status_code == 302, resp.status_code
        return int(re.search(r"/b/(\d+)/", resp.headers["location"]).group(1))

    def update_settings(self, session_id: int, **changes) -> httpx.Response:
        page = self.get(f"/sessions/{session_id}/b/{self.branch_of(session_id)}/").text
        form = dict(SETTINGS_FORM)
        current_title = re.search(r'name="title" value="([^"]*)"', page)
        if current_title:
            form["title"] = current_title.group(1)
        for key, value in changes.items():
            if key == "extended_retention":
                if value:
                    form["extended_retention"] = "on"
            else:
                form[key] = "" if value is None else str(value)
        resp = self.post(f"/sessions/{session_id}/settings/", form)
        assert resp.status_code == 200, resp.text[:3000]
        return resp

    def send(self, session_id: int, branch_id: int, content: str) -> httpx.Response:
        return self.post(f"/sessions/{session_id}/b/{branch_id}/send/", {"content": content})

    def page(self, session_id: int, branch_id: int) -> str:
        resp = self.get(f"/sessions/{session_id}/b/{branch_id}/")
        assert resp.status_code == 200, resp.status_code
        return resp.text

    def wait_idle(self, session_id: int, branch_id: int, timeout: float = 20.0) -> str:
        """Poll the page until no reply is pending or streaming; return the page."""
        deadline = time.monotonic() + timeout
        while True:
            html = self.page(session_id, branch_id)
            if "status-pending" not in html and "status-streaming" not in html:
                return html
            if time.monotonic() > deadline:
                raise AssertionError("a reply is still running after %.0fs" % timeout)
            time.sleep(0.2)

    # --- WebSocket ---------------------------------------------------------------------------
    @asynccontextmanager
    async def socket(self, session_id: int, *, origin: str | None = None):
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        url = self.server.base_url.replace("http://", "ws://") + f"/ws/sessions/{session_id}/"
        headers = {"Cookie": cookie, "Origin": origin or self.server.base_url}
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            yield ws


async def collect(ws, *, until: str, timeout: float = 20.0) -> list[str]:
    """Frames received until one contains `until`."""
    frames: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no frame with {until!r} within {timeout}s; got {len(frames)} frames: {frames[-3:]}")
        frame = await asyncio.wait_for(ws.recv(), remaining)
        frames.append(frame)
        if until in frame:
            return frames


DELTA_RE = re.compile(r'<div hx-swap-oob="beforeend:#body-(\d+)" data-seq="(\d+)">(.*?)</div>', re.S)
SNAPSHOT_RE = re.compile(r'<div hx-swap-oob="innerHTML:#body-(\d+)" data-seq="(\d+)" data-snapshot>(.*?)</div>', re.S)


def stream_text(frames: list[str], message_id: int) -> tuple[str, list[int]]:
    """Reassemble a reply from delta/snapshot frames as the browser script does (seq rules)."""
    import html as htmllib

    text, have, seqs = "", 0, []
    for frame in frames:
        for mid, seq, body in SNAPSHOT_RE.findall(frame):
            if int(mid) == message_id and int(seq) >= have:
                text, have = htmllib.unescape(body), int(seq)
        for mid, seq, body in DELTA_RE.findall(frame):
            if int(mid) == message_id:
                seqs.append(int(seq))
                if int(seq) > have:
                    text += htmllib.unescape(body)
                    have = int(seq)
    return text, seqs
