"""A real headless Chromium for the dashboard tests (Debian's chromium + chromium-driver, .ci/run).

`browser(tmp_path)` starts one with a fresh profile and every network feature that would
reach beyond 127.0.0.1 turned off; tests skip, saying why, only when Chromium or its
driver is not installed.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")


def chromium_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver",) if os.path.exists(p)), None)
    if chromium is None or driver is None:
        pytest.skip("Chromium and chromium-driver are not installed (`apt-get install -y chromium chromium-driver`, "
                    "as .ci/run does)")
    return chromium, driver


@contextmanager
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chromium_paths()
    options = Options()
    options.binary_location = chromium
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path, log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()
