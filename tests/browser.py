"""A headless Chromium for the pages' tests (test_visualize.py, test_attention_map.py, test_export.py), driven over
W3C WebDriver by chromedriver with the standard library only. Not a test module: the test files
``from browser import ...`` (tests/ is on sys.path under pytest's default import mode)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"                 # the W3C WebDriver element-reference key


class WebDriver:
    """The handful of W3C WebDriver commands this test needs, as JSON over HTTP to a local chromedriver.

    Standard library only (no selenium, so nothing such as Selenium Manager can try to download a driver),
    and the HTTP opener ignores any proxy settings: the only connection is to 127.0.0.1."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.session = None

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with self.opener.open(request, timeout=30) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as err:
            raise AssertionError(f"WebDriver {method} {path} failed: {err.read().decode()[:400]}") from None

    def wait_until_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.call("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("chromedriver did not start")
            time.sleep(0.1)

    def start(self, user_data_dir) -> None:
        options = {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"]}
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"/session/{value['sessionId']}"

    def open(self, page) -> None:
        """Show the file ``page`` (a file:// URL, as a visitor opens a downloaded page)."""
        self.call("POST", f"{self.session}/url", {"url": Path(page).resolve().as_uri()})

    def run(self, script: str, *args):
        return self.call("POST", f"{self.session}/execute/sync", {"script": script, "args": list(args)})

    def click(self, css: str) -> None:
        element = self.call("POST", f"{self.session}/element", {"using": "css selector", "value": css})
        self.call("POST", f"{self.session}/element/{element[ELEMENT]}/click", {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_summary(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decoded image data): a blank page has only a handful."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    return width, height, len(set(zlib.decompress(b"".join(chunks))))


_browser_present = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                      reason="needs the chromium and chromedriver binaries "
                                             "(Debian: apt-get install chromium chromium-driver)")


def needs_browser(test):
    """A test that drives headless Chromium: skipped without it, and in the slow tier (it starts processes)."""
    return pytest.mark.slow(_browser_present(test))


@contextlib.contextmanager
def open_page(page, tmp_path):
    """A WebDriver session showing the file ``page``; chromedriver is stopped afterwards, whatever happens."""
    driver_log = open(tmp_path / "chromedriver.log", "wb")  # noqa: SIM115 -- closed in the finally below
    port = free_port()
    process = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=driver_log, stderr=subprocess.STDOUT)
    browser = WebDriver(port)
    try:
        browser.wait_until_ready(10)
        browser.start(tmp_path / "profile")
        browser.open(page)
        yield browser
    finally:
        if browser.session:
            with contextlib.suppress(AssertionError, OSError):
                browser.call("DELETE", browser.session)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        driver_log.close()
