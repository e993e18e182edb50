"""`llava-hf serve` for real: start the Gradio server on localhost, drive it in headless Chromium (Debian's
/usr/bin/chromium through Playwright; no browser is downloaded), upload an image, ask twice, read the answers."""

import shutil
import socket
import threading
import time
import urllib.request
import warnings

import pytest
from PIL import Image

from llava_hf.cli.main import main

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def skip_with_reason(reason):
    warnings.warn(f"browser test skipped: {reason}")  # shown in pytest's summary even without -rs
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url, thread, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError("llava-hf serve exited before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout:.0f}s")


@pytest.fixture
def browser_page(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        skip_with_reason("Chromium is not installed (Debian: apt-get install chromium)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        except PlaywrightError as error:
            skip_with_reason(f"Chromium cannot start here: {str(error).splitlines()[0]}")
        yield context.new_page()
        context.close()


def last_answer_is(page, text, timeout_ms=60000):
    """Wait until the last assistant bubble shows `text` and the message box accepts input again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            """([expected]) => {
                const answers = document.querySelectorAll('#conversation .bot');
                const box = document.querySelector('#message textarea');
                return answers.length > 0 && answers[answers.length - 1].innerText.trim() === expected
                    && box && !box.disabled;
            }""", arg=[text.strip()], timeout=timeout_ms)
    except PlaywrightTimeout:
        shown = page.locator("#conversation").inner_text()
        raise AssertionError(f"expected the answer {text!r}; the page shows {shown!r}") from None


@pytest.mark.browser
@pytest.mark.slow
def test_upload_ask_and_read_streamed_answers_in_chromium(browser_page, tiny_llava, tiny_llava_dir, image_files,
                                                           full_history_answer):
    import gradio

    model, processor = tiny_llava
    red = Image.open(image_files[0]).convert("RGB")
    first = full_history_answer(model, processor, [("what color is it", [red], None)])
    second = full_history_answer(model, processor, [("what color is it", [red], first), ("and the shape", [], None)])

    port = free_port()
    exit_codes = []
    server = threading.Thread(target=lambda: exit_codes.append(main(
        ["serve", tiny_llava_dir, "--port", str(port), "--temperature", "0", "--max_new_tokens", "10"])), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, server)
        page = browser_page
        page.set_default_timeout(60000)  # generous: CI machines can be busy
        page.goto(url)
        page.locator("#message input[type=file]").set_input_files(image_files[0])
        page.locator('#message img[src*="gradio_api/file="]').wait_for()  # uploaded to the server
        page.locator("#message textarea").fill("what color is it")
        page.locator("#message textarea").press("Enter")
        last_answer_is(page, first)
        page.locator("#message textarea").fill("and the shape")
        page.locator("#message textarea").press("Enter")
        last_answer_is(page, second)
        assert page.locator("#conversation img").count() >= 1  # the uploaded image is shown in the chat
    finally:
        gradio.close_all()
        server.join(timeout=30)
    assert exit_codes == [0]


def test_each_turn_may_bring_its_own_image_without_a_browser(tiny_llava, image_files, full_history_answer):
    """The submit handler itself: an image with the first question, another with the third, one sent alone."""
    pytest.importorskip("gradio")
    from llava_hf.inference.chat_session import ChatSession
    from llava_hf.inference.web_demo import respond

    model, processor = tiny_llava
    red, blue = (Image.open(path).convert("RGB") for path in image_files)
    greedy = {"max_new_tokens": 10, "do_sample": False}
    # (text, files sent, the images of the turn it answers: None when nothing is answered)
    steps = [("what color is it", [image_files[0]], [red]), ("and the shape", [], []), ("", [image_files[1]], None),
             ("and this one", [image_files[0]], [blue, red])]
    state, turns = None, []
    for text, files, turn_images in steps:
        *_, (_, shown, state) = respond(lambda: ChatSession(model, processor, generation_options=greedy),
                                        {"text": text, "files": files}, state)
        if turn_images is not None:
            expected = full_history_answer(model, processor, [*turns, (text, turn_images, None)])
            assert shown[-1] == {"role": "assistant", "content": expected}
            turns.append((text, turn_images, expected))
    session = state[0]
    assert [len(turn.images) for turn in session.turns] == [1, 0, 2]
    assert sum(1 for message in shown if isinstance(message["content"], dict)) == 3  # every image is shown


def test_serve_reports_a_bad_model_folder_in_one_line(capsys, tiny_llava_parts):
    code = main(["serve", str(tiny_llava_parts[2] / "llm"), "--port", str(free_port())])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("llava-hf serve: error: ") and "not a LLaVA model" in err
