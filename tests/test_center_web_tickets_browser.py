"""A hazard ticket's whole loop in a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium): a simulated gateway raises an overload alarm; the
operator opens a ticket from the alarm's page and assigns it; the tenant's safety officer
rectifies it with a photo; the inspector verifies it; and the ledger export holds it closed.

Set PARKWATCH_SCREENSHOTS=docs/images to save the pages' screenshots for the docs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from center_web import PASSWORDS, console  # noqa: F401  (console: the fixture)
from conftest import wait_until
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import Gateway, event
from test_center_tickets import png
from test_center_web_browser import (  # noqa: F401  (browser: the fixture)
    browser,
    log_in,
    pytestmark,
    screenshot,
    url,
    wait,
)

PW = "ticket-pass-1"


def log_out(driver: Any) -> None:
    driver.find_element(By.ID, "logout").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "login")))


def state_of(driver: Any) -> str:
    """The ticket page's state, read in one step (the page may be being replaced)."""
    return str(driver.execute_script(
        "const t = document.getElementById('ticket'); return t ? t.dataset.state : ''"))


def test_an_overload_alarm_becomes_a_ticket_rectified_verified_and_closed_in_the_ledger(
        console: CenterService, broker: LocalMosquitto, browser: Any, tmp_path: Path) -> None:
    assert add_user(console.store, "李网格", "inspector", PW, park="xinqiao") is None
    assert add_user(console.store, "huaxin-safety", "tenant", PW, park="xinqiao",
                    tenant="huaxin") is None
    photo_file = tmp_path / "rectified.png"
    photo_file.write_bytes(png())
    alarm = event("xinqiao", new_alarm_id(time.time()), 1, sensor_kind="load_cell",
                  rule="high_threshold", severity="warning", sensor_id="A-2F-LC3",
                  floor="2F", zone="east", value=8200.0, threshold=8000.0, unit="kg",
                  message="【楼层称重预警】A栋 二层 东区 当前 8200 kg，预警限值 8000 kg")
    gw = Gateway(broker, "xinqiao")
    try:
        gw.publish(alarm)
    finally:
        gw.close()
    wait_until(lambda: console.store.alarm(alarm["alarm_id"]) is not None, 10, "the alarm")

    # the command center's operator: from the alarm's page, one click, then assign
    log_in(browser, console, "王工", PASSWORDS["王工"])
    wait(browser).until(EC.presence_of_element_located((By.ID, "who")))
    browser.get(url(console, f"/alarms/{alarm['alarm_id']}"))
    browser.find_element(By.ID, "open-ticket").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "ticket")))
    ticket_id = browser.find_element(By.ID, "ticket").get_attribute("data-ticket")
    assert state_of(browser) == "reported"
    assert "huaxin" in browser.find_element(By.ID, "ticket-responsible").text
    assert "8200" in browser.find_element(By.CSS_SELECTOR, "dl.evidence").text
    browser.find_element(By.ID, "assign-note").send_keys("请今天内把货物移出二层东区")
    browser.find_element(By.ID, "do-assign").click()
    wait(browser).until(lambda d: state_of(d) == "assigned")
    screenshot(browser, "center-ticket.png", tmp_path)
    log_out(browser)

    # the tenant's safety officer, on a phone: start, then submit with a photo
    browser.set_window_size(390, 844)
    log_in(browser, console, "huaxin-safety", PW)
    wait(browser).until(EC.presence_of_element_located((By.ID, "tickets")))  # sent to /tickets
    browser.find_element(By.CSS_SELECTOR, f'tr[data-ticket="{ticket_id}"] a').click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "do-start"))).click()
    wait(browser).until(lambda d: state_of(d) == "rectifying")
    browser.find_element(By.ID, "submit-note").send_keys("已将货物移至一层仓库，二层东区已清空")
    browser.find_element(By.ID, "submit-photos").send_keys(str(photo_file))
    browser.find_element(By.ID, "do-submit").click()
    wait(browser).until(lambda d: state_of(d) == "submitted")
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#ticket-steps img.thumb")
    assert len(thumbs) == 1
    assert browser.execute_script("return arguments[0].naturalWidth", thumbs[0]) == 1
    screenshot(browser, "center-ticket-phone.png", tmp_path)
    log_out(browser)

    # the inspector checks the work and closes it
    browser.set_window_size(1400, 900)
    log_in(browser, console, "李网格", PW)
    wait(browser).until(EC.presence_of_element_located((By.ID, "tickets")))
    browser.get(url(console, f"/tickets/{ticket_id}"))
    browser.find_element(By.ID, "verify-note").send_keys("现场复查，通道已清空")
    browser.find_element(By.ID, "do-verify").click()
    wait(browser).until(lambda d: state_of(d) == "closed")
    assert "已销号" in browser.find_element(By.ID, "ticket-state").text
    steps = browser.find_element(By.ID, "ticket-steps").text
    for word in ("上报", "交办", "开始整改", "提交复查", "复查合格", "王工", "huaxin-safety",
                 "李网格"):
        assert word in steps, word

    # the ledger export, as the browser downloads it, holds the ticket closed on time
    browser.get(url(console, "/tickets/ledger"))
    screenshot(browser, "center-ledger.png", tmp_path)
    csv = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/tickets/ledger.csv').then(r => r.text()).then(done);")
    (row,) = [line for line in csv.splitlines() if line.startswith(ticket_id)]
    assert ",已销号," in row and ",是," in row and "huaxin" in row
