"""Headless Chromium driven over the DevTools protocol, for tests that click like a user.

Chromium's `--remote-debugging-pipe` reads protocol commands from file descriptor 3 and
writes replies and events to 4, as JSON messages ended by a NUL byte: no port, no websocket
library, no package beyond Debian's chromium. `Browser.open(page)` loads a page in a fresh
tab and records every network request and console message; `click(selector)` sends real
mouse events (Input.dispatchMouseEvent) at the element's centre, through the browser's own
hit testing and event dispatch.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT = 60.0  # seconds for one protocol command (a loaded 2-core machine is slow)


@dataclass
class Tab:
    """One page, with what it asked the network for and said on the console."""

    browser: Browser
    session: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    load_seconds: float | None = None

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        reply = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click(self, selector: str) -> None:
        """Scroll the element into view and click its centre with the mouse."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def type_text(self, selector: str, text: str) -> None:
        """Focus an input and type into it, key by key (Input.insertText fires input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
            params["clip"]["scale"] = 1
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Browser:
    """A headless Chromium process; use as a context manager."""

    def __init__(self, executable: str, workdir: Path, *, width: int = 1280, height: int = 1000):
        self.width, self.height = width, height
        to_browser_read, self._to_browser = _pipe()
        self._from_browser, from_browser_write = _pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fds 3 and 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.log = (workdir / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={workdir / 'profile'}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            close_fds=False,  # fds 3 and 4, placed by wire_pipes, must reach Chromium
            preexec_fn=wire_pipes,  # noqa: PLW1509 - the only way to place fds 3 and 4
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._tabs: dict[str, Tab] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.send("Browser.close", {}, timeout=10)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        self.log.close()

    def send(
        self,
        method: str,
        params: dict[str, Any],
        *,
        session: str | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            number = self._next_id
            self._replies[number] = queue.Queue()
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            reply = self._replies[number].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"Chromium did not answer {method} in {timeout:.0f} s") from None
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def open(self, page: Path, *, timeout: float = TIMEOUT) -> Tab:
        """A new tab with `page` loaded (its load event fired); load_seconds measured from the
        navigation's start to the end of the load event, as the page itself timed it."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        tab = Tab(self, session["sessionId"])
        self._tabs[tab.session] = tab
        for domain in ("Page", "Network", "Runtime", "Log"):
            tab.send(f"{domain}.enable")
        tab.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        tab.send("Page.navigate", url=page.as_uri())
        deadline = time.monotonic() + timeout
        while not self._saw(tab, "Page.loadEventFired", deadline):
            pass
        timing = tab.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0];"
            " return [n.startTime, n.loadEventEnd]; })()"
        )
        tab.load_seconds = (timing[1] - timing[0]) / 1000
        return tab

    def _saw(self, tab: Tab, method: str, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the page did not fire {method} in time")
        try:
            event = self._events.get(timeout=left)
        except queue.Empty:
            return False
        return event.get("sessionId") == tab.session and event["method"] == method

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self._dispatch(json.loads(raw))
        os.close(self._from_browser)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            self._replies[message["id"]].put(message)
            return
        tab = self._tabs.get(message.get("sessionId", ""))
        params = message.get("params", {})
        if tab is not None:
            if message["method"] == "Network.requestWillBeSent":
                tab.requests.append(params["request"]["url"])
            elif message["method"] == "Runtime.consoleAPICalled":
                tab.console.append(" ".join(str(a.get("value")) for a in params["args"]))
            elif message["method"] == "Runtime.exceptionThrown":
                tab.console.append(f"exception: {params['exceptionDetails']}")
            elif message["method"] == "Log.entryAdded":
                tab.console.append(f"{params['entry']['level']}: {params['entry']['text']}")
        self._events.put(message)


def _pipe() -> tuple[int, int]:
    """A pipe whose ends sit above fd 10, so placing fds 3 and 4 in the child clobbers neither."""
    read, write = os.pipe()
    high = (
        fcntl.fcntl(read, fcntl.F_DUPFD_CLOEXEC, 10),
        fcntl.fcntl(write, fcntl.F_DUPFD_CLOEXEC, 10),
    )
    os.close(read)
    os.close(write)
    return high
