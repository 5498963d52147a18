"""Connecting a Minut account in a real (headless) Chromium, as a person would.

The bridge runs with `minut.auth: authorization_code` against the simulator and a real broker.
The browser opens the status page, clicks "Connect Minut account", approves at the simulated
Minut, lands back on the page and sees the Points once the bridge has read them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minut2mqtt.daemon import Daemon
from minut2mqtt.simulator import SimulatedAccount

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM.exists() or shutil.which("chromium")) or not (
    CHROMEDRIVER.exists() or shutil.which("chromedriver")
):
    pytest.skip(
        "Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = Options()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def test_connect_approve_and_see_the_points(
    browser: Any, start_daemon: Callable[..., Daemon], account: SimulatedAccount
) -> None:
    started = time.monotonic()
    daemon = start_daemon(**{"minut.auth": "authorization_code"})
    page = f"http://localhost:{daemon.webhook_port}/"
    wait = WebDriverWait(browser, 10)

    browser.get(page)
    assert browser.find_element(By.ID, "account-state").text == "not connected"
    browser.find_element(By.ID, "connect").click()

    wait.until(expected_conditions.element_to_be_clickable((By.ID, "approve")))
    assert browser.current_url.startswith(f"{account_root(daemon, account)}/v8/oauth/authorize?")
    assert "Minut (simulated)" in browser.page_source
    browser.find_element(By.ID, "approve").click()

    wait.until(expected_conditions.url_to_be(page))
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "homes"), "Hallway"))
    homes = browser.find_element(By.ID, "homes").text
    assert "Beach house" in homes and "Kitchen" in homes
    assert "21.4 °C" in homes.replace("\N{NO-BREAK SPACE}", " ")
    assert browser.find_element(By.ID, "account-state").text == "connected"
    for token in account.tokens_issued:
        assert token not in browser.page_source
    print(f"browser flow took {time.monotonic() - started:.1f} s")


def account_root(daemon: Daemon, account: SimulatedAccount) -> str:
    return daemon.settings.minut.api_url.removesuffix("/v8")
