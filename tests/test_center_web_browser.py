"""The command center's console in a real headless Chromium (Debian's chromium and
chromium-driver, driven by selenium): log in, a fire published by a simulated gateway
appears on the board without a reload, a wrong password and a missing CSRF token are refused,
and an acknowledgement from the page comes back as the gateway's acknowledged event.

Set PARKWATCH_SCREENSHOTS=docs/images to save the board's screenshots for the docs."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from center_web import PASSWORDS, console  # noqa: F401  (console: the fixture)
from conftest import REPO
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.service import CenterService
from parkwatch.devtools.localbroker import LocalMosquitto
from test_center_ingest import PREFIX, Gateway, event

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    (CHROMIUM is None or DRIVER is None) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are needed (./dev setup installs them)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--lang=zh-CN", "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def url(center: CenterService, path: str = "/") -> str:
    assert center.web is not None
    return f"http://127.0.0.1:{center.web.port}{path}"


def log_in(driver: Any, center: CenterService, user: str, password: str) -> None:
    driver.get(url(center, "/login"))
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def wait(driver: Any, timeout: float = 10) -> WebDriverWait[Any]:
    return WebDriverWait(driver, timeout, poll_frequency=0.05)


def screenshot(driver: Any, name: str, tmp_path: Path) -> None:
    driver.save_screenshot(str(tmp_path / name))
    target = os.environ.get("PARKWATCH_SCREENSHOTS")
    if target:
        (REPO / target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, REPO / target / name)


def test_a_wrong_password_and_a_missing_csrf_token_are_refused(
        console: CenterService, browser: Any) -> None:
    log_in(browser, console, "王工", "wrong-password")
    error = wait(browser).until(EC.visibility_of_element_located((By.ID, "error")))
    assert "用户名或密码不对" in error.text
    assert browser.find_elements(By.ID, "logout") == []
    # the same form with its CSRF token taken out
    browser.execute_script("document.querySelector('#login-form input[name=csrf]').remove()")
    browser.find_element(By.ID, "password").send_keys(PASSWORDS["王工"])
    browser.find_element(By.ID, "login").click()
    message = wait(browser).until(EC.visibility_of_element_located((By.ID, "message")))
    assert "CSRF" in message.text and "操作未执行" in message.text
    browser.get(url(console))
    assert browser.current_url.endswith("/login")  # still not logged in


def test_a_fire_appears_on_the_board_without_reload_and_is_acknowledged_from_the_page(
        console: CenterService, broker: LocalMosquitto, browser: Any, tmp_path: Path) -> None:
    gw = Gateway(broker, "xinqiao")
    commands: list[dict[str, Any]] = []

    def take_ack(_c: Any, _u: Any, msg: Any) -> None:
        """The gateway's side: it receives the operator's ack command."""
        commands.append(json.loads(msg.payload))

    gw.client.on_message = take_ack
    gw.client.subscribe(f"{PREFIX}/xinqiao/commands/ack", qos=1)
    try:
        gw.publish({"state": "online", "gateway": "xinqiao-gw1"},
                   topic=f"{PREFIX}/xinqiao/gateway", retain=True)
        warn = event("xinqiao", new_alarm_id(time.time()), 1, sensor_kind="load_cell",
                     rule="high_threshold", severity="warning", sensor_id="A-2F-LC3",
                     floor="2F", message="A栋 二层 荷载 LC3 超过警告值 (812 kg)")
        gw.publish(warn)
        log_in(browser, console, "王工", PASSWORDS["王工"])
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#live.on")))
        wait(browser).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'tr[data-alarm="{warn["alarm_id"]}"]')))
        browser.execute_script("window.notReloaded = true")

        fire = event("xinqiao", new_alarm_id(time.time()), 1)
        published = time.monotonic()
        gw.publish(fire)
        row = wait(browser, 2).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'tr.fire[data-alarm="{fire["alarm_id"]}"]')))
        assert time.monotonic() - published < 2.0
        assert browser.execute_script("return window.notReloaded") is True
        assert "火警" in row.text and "A-3F-FB1" in row.text
        rows = browser.find_elements(By.CSS_SELECTOR, "#alarms tbody tr")
        assert [r.get_attribute("data-alarm") for r in rows] == [fire["alarm_id"],
                                                                 warn["alarm_id"]]
        assert "在线" in browser.find_element(By.CSS_SELECTOR, 'li[data-park="xinqiao"]').text
        screenshot(browser, "center-board.png", tmp_path)

        row.find_element(By.CSS_SELECTOR, f'a[href="/alarms/{fire["alarm_id"]}"]').click()
        wait(browser).until(EC.presence_of_element_located((By.ID, "timeline")))
        browser.find_element(By.ID, "note").send_keys("已到现场")
        browser.find_element(By.ID, "ack").click()
        sent = wait(browser).until(EC.visibility_of_element_located((By.ID, "ack-sent")))
        assert "等待网关回复" in sent.text and browser.find_elements(By.ID, "acked") == []
        wait(browser).until(lambda _d: commands)
        (cmd,) = commands
        assert (cmd["alarm_id"], cmd["by"], cmd["note"]) == (fire["alarm_id"], "王工", "已到现场")
        wait(browser).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, "html[data-stream=open]")))
        # the gateway answers with the acknowledged event (seq + 1): the page shows it live
        gw.publish(event("xinqiao", cmd["alarm_id"], fire["seq"] + 1, "acknowledged",
                         acked_by=cmd["by"], acked_at="2026-12-05T10:00:09.000Z"))
        acked = wait(browser).until(EC.visibility_of_element_located((By.ID, "acked")))
        assert "已确认" in acked.text
        assert "王工" in browser.find_element(By.ID, "alarm-state").text
        timeline = browser.find_element(By.ID, "timeline").text
        assert "发生" in timeline and "已确认" in timeline
        assert "已到现场" in browser.find_element(By.ID, "commands").text
        screenshot(browser, "center-alarm.png", tmp_path)
        browser.set_window_size(390, 844)  # a phone
        browser.get(url(console))
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#live.on")))
        screenshot(browser, "center-board-phone.png", tmp_path)
    finally:
        gw.close()


def test_the_history_is_filtered_and_its_csv_export_holds_the_alarm(
        console: CenterService, browser: Any) -> None:
    water = event("xinqiao", new_alarm_id(time.time() - 60), 1, sensor_kind="water_level",
                  rule="high_threshold", severity="warning", sensor_id="B-1F-WL1",
                  message="B栋 一层 水位超过警告值")
    fire = event("xinqiao", new_alarm_id(time.time()), 1)
    console.store.store_events([water, fire], time.time())
    log_in(browser, console, "viewer", PASSWORDS["viewer"])
    wait(browser).until(EC.presence_of_element_located((By.ID, "nav-history"))).click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "history-form")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert [r.get_attribute("data-alarm") for r in rows] == [fire["alarm_id"],
                                                             water["alarm_id"]]
    browser.find_element(By.ID, "f-park").send_keys("xinqiao")
    browser.find_element(By.CSS_SELECTOR, '#f-hazard option[value="water"]').click()
    browser.find_element(By.ID, "filter").click()
    wait(browser).until(lambda d: "hazard=water" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert [r.get_attribute("data-alarm") for r in rows] == [water["alarm_id"]]
    assert "水浸" in rows[0].text and "B-1F-WL1" in rows[0].text
    link = browser.find_element(By.ID, "csv")
    assert "hazard=water" in (link.get_attribute("href") or "")
    # what the link downloads, fetched by the page with its session cookie
    got = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById('csv').href).then(async r => done({
            status: r.status, type: r.headers.get('content-type'),
            bytes: Array.from(new Uint8Array(await r.clone().arrayBuffer()).slice(0, 3)),
            text: await r.text()})).catch(e => done({error: String(e)}));""")
    assert got["status"] == 200 and got["type"].startswith("text/csv"), got
    assert got["bytes"] == [0xEF, 0xBB, 0xBF]
    lines = got["text"].strip().splitlines()
    assert lines[0].startswith("alarm_id,park,") and len(lines) == 2
    assert water["alarm_id"] in lines[1] and "B栋 一层 水位超过警告值" in lines[1]
    rows[0].find_element(By.TAG_NAME, "a").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "timeline")))
    assert water["alarm_id"] in browser.current_url
def test_the_park_view_shows_a_fire_in_its_place(
        console: CenterService, broker: LocalMosquitto, browser: Any, tmp_path: Path) -> None:
    gw = Gateway(broker, "xinqiao")
    try:
        gw.publish({"state": "online", "gateway": "xinqiao-gw1", "park": "xinqiao",
                    "sensors": 22}, topic=f"{PREFIX}/xinqiao/gateway", retain=True)
        warn = event("xinqiao", new_alarm_id(time.time()), 1, sensor_kind="load_cell",
                     rule="high_threshold", severity="warning", sensor_id="A-2F-LC3",
                     floor="2F", tenants=["bolt"],
                     message="A栋 二层 荷载 LC3 超过警告值 (812 kg)")
        fire = event("xinqiao", new_alarm_id(time.time()), 1, zone="Z1",
                     tenants=["huaxin", "acme"], message="A栋 三层 火警按钮 FB1 按下")
        gw.publish(warn)
        gw.publish(fire)
        log_in(browser, console, "王工", PASSWORDS["王工"])
        wait(browser).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'tr.fire[data-alarm="{fire["alarm_id"]}"]')))
        # the live board re-renders its rows: click the park's link as it is at this moment
        browser.execute_script(
            "document.querySelector('tr.fire a[href=\"/parks/xinqiao\"]').click()")
        place = wait(browser).until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, 'div.place[data-place="A/3F/Z1"]')))
        assert "fire" in (place.get_attribute("class") or "").split()
        assert place.value_of_css_property("background-color") == "rgba(198, 40, 40, 1)"
        assert "火警" in place.text and "acme、huaxin" in place.text
        assert "A-3F-FB1" in place.text and "A栋 三层 火警按钮 FB1 按下" in place.text
        other = browser.find_element(By.CSS_SELECTOR, 'div.place[data-place="A/2F/"]')
        assert "fire" not in (other.get_attribute("class") or "").split()
        assert "A-2F-LC3" in other.text and "bolt" in other.text
        assert "xinqiao-gw1" in browser.find_element(By.ID, "park-gateway").text
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", place)
        screenshot(browser, "center-park.png", tmp_path)
        place.find_element(By.CSS_SELECTOR, f'a[href="/alarms/{fire["alarm_id"]}"]').click()
        wait(browser).until(EC.presence_of_element_located((By.ID, "timeline")))
    finally:
        gw.close()
