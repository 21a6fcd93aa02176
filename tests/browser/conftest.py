"""Headless Chromium for the browser tests, once per Chromium that is installed.

Every browser test runs against Debian's ``/usr/bin/chromium`` and against playwright's own Chromium
(``playwright install chromium``); one that is missing is skipped with the reason. Nothing is
downloaded here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUMS = ["debian-chromium", "playwright-chromium"]


def _playwright_chromium(p) -> Path | None:
    try:
        path = Path(p.chromium.executable_path)
    except Exception:  # noqa: BLE001 - playwright raises when its browser registry has no entry
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="module", params=CHROMIUMS)
def browser(request):
    """A launched playwright Browser; parametrized over Debian's and playwright's Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    with sync_api.sync_playwright() as p:
        if request.param == "debian-chromium":
            if not DEBIAN_CHROMIUM.exists():
                pytest.skip("Debian chromium not installed at /usr/bin/chromium (apt-get install -y chromium)")
            executable = str(DEBIAN_CHROMIUM)
        else:
            found = _playwright_chromium(p)
            if found is None:
                pytest.skip("playwright's Chromium is not installed (python -m playwright install chromium)")
            executable = str(found)
        b = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()
