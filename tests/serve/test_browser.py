"""The web page end to end in Debian's headless Chromium (apt: chromium, chromium-driver):
type a question, watch the answer arrive, see the evidence (text, an image thumbnail, a video
clip starting at its cited second) with scores and route, and keep a screenshot.

The screenshot is written under pytest's tmp dir; with RAGMM_UPDATE_SCREENSHOT=1 it is also
copied to docs/serve_screenshot.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import EXAMPLES, ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)"),
]
Q = "When will the garden club's water pump be repaired?"


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, text_encoder, image_encoder):
    """A server over a lighthouse text, the apiary notice image and the demo video."""
    from ragmm.serve.app import BackgroundServer, create_app

    from tests.serve.conftest import make_pipe

    pipe = make_pipe(tmp_path_factory.mktemp("page") / "store", text_encoder, image_encoder)
    files = [EXAMPLES / "lighthouses.md", EXAMPLES / "images" / "apiary_notice.png", EXAMPLES.parent / "videos" / "garden_club.mp4"]
    pipe.index(files, corpus_root=EXAMPLES.parent, progress=False)
    with BackgroundServer(create_app(pipe)) as server:
        yield server
    pipe.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1360,900",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_ask_on_the_page(demo_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(demo_server.url + "/")
    wait.until(lambda d: "clip" in d.find_element(By.ID, "corpora").text)  # corpora listed from /corpora
    box = browser.find_element(By.ID, "question")
    box.send_keys(Q)
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    answer = browser.find_element(By.ID, "answer")
    assert "error" not in (answer.get_attribute("class") or ""), answer.text
    assert "May" in answer.text and "[1]" in answer.text
    assert answer.find_elements(By.CSS_SELECTOR, "a[href^='#ev-']")  # citations link to their evidence

    cards = browser.find_elements(By.CSS_SELECTOR, "#evidence .card")
    kinds = {c.get_attribute("data-modality") for c in cards}
    assert {"text", "image", "video"} <= kinds, kinds
    for card in cards:
        scores = card.find_element(By.CLASS_NAME, "scores").text
        assert "relevancy" in scores and "route" in scores, scores
    # the image thumbnail loaded from /media
    wait.until(lambda d: d.execute_script("const i = document.querySelector('#evidence img'); return i && i.complete && i.naturalWidth > 0"))
    # the clip starts at the second its matched span starts
    video = browser.find_element(By.CSS_SELECTOR, "#evidence video")
    src = video.get_attribute("src")
    assert "/media/videos/garden_club.mp4#t=" in src
    start = float(src.rsplit("#t=", 1)[1])
    wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 2 && !arguments[0].seeking", video))  # the frame at that second is shown
    assert abs(browser.execute_script("return arguments[0].currentTime", video) - start) < 0.5
    assert browser.find_elements(By.CSS_SELECTOR, "#trace li")  # the route and search steps

    shot = tmp_path / "serve_screenshot.png"
    browser.execute_script("document.getElementById('trace-box').open = true")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("RAGMM_UPDATE_SCREENSHOT"):
        target = ROOT / "docs" / "serve_screenshot.png"
        target.parent.mkdir(exist_ok=True)
        from PIL import Image

        # 128 colours: a page of flat colours and text stays legible at a third of the size
        Image.open(shot).convert("RGB").quantize(colors=128).save(target, optimize=True)


def test_page_shows_a_server_error(demo_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(demo_server.url + "/")
    browser.execute_script("document.getElementById('question').value = 'why? '.repeat(1000)")
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    assert "max_question_chars" in browser.find_element(By.ID, "answer").text
