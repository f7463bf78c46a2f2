"""The web demo in a real headless Chromium, driven by Playwright, with the embedded default model."""

import os
import socket
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]

pytest.importorskip("gradio", reason="the web demo needs Gradio (pip install 'fusionframes[web]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.is_file():
    pytest.skip("Debian's chromium is not installed (make test installs it with apt-get when run as root)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fusionframes import load_default_pipeline
    from fusionframes.serve import serve

    pipe = load_default_pipeline()
    pipe.progress = False
    port = free_port()
    app = serve(pipe, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(server, wait_until="networkidle")
        yield page
        browser.close()


def test_an_empty_prompt_is_a_message_not_a_traceback(page):
    page.locator("#prompt textarea").fill("")
    page.locator("#generate").click()
    message = page.get_by_text("write a prompt first")
    message.first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()


def test_prompt_to_playable_video_in_the_browser(page, tmp_path):
    page.locator("#prompt textarea").fill("a red ball moving to the right")
    page.get_by_label("low").check()  # the 16 keyframes at 2 FPS: seconds on 2 cores
    page.locator("#generate").click()
    page.wait_for_function("() => { const v = document.querySelector('#video video');"
                           " return v !== null && v.duration > 0; }", timeout=180_000)
    duration = page.evaluate("document.querySelector('#video video').duration")
    assert duration == pytest.approx(16 / 2, abs=0.6)  # 16 frames at 2 FPS
    assert page.locator("#keyframes img").count() == 16
    assert "seed **" not in page.locator("#settings").inner_text()  # rendered as markdown
    assert "seed 0" in page.locator("#settings").inner_text()
    # FUSIONFRAMES_SCREENSHOT=docs/web-demo.png pytest tests/test_web_demo.py refreshes the README's picture.
    shot = Path(os.environ.get("FUSIONFRAMES_SCREENSHOT") or tmp_path / "web-demo.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
