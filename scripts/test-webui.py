#!/usr/bin/env python3
"""The web chat page of `whale serve` in a real browser: Debian's Chromium driven by Playwright.

Starts `whale serve MODEL` on 127.0.0.1 (a free port), opens http://127.0.0.1:PORT/ and checks:
  - the page loads with no request leaving 127.0.0.1 (no CDN) and shows the model's name;
  - typing a message and pressing Enter streams an answer that equals `whale run --chat --temp 0` (temperature and
    max tokens set in the settings panel), and the status line shows tokens/s;
  - Shift+Enter adds a line instead of sending; the Stop button ends a long answer and the server goes on serving;
  - Markdown (headings, lists, code blocks, inline code, links) renders, HTML in the text does not;
  - a reasoning model's reasoning_content shows in a collapsible block (streamed from a stub response);
  - New chat clears the conversation; at phone width (390 px) nothing overflows sideways.
Screenshots (desktop and phone width) go to $WHALE_TEST_ARTIFACTS (default: a temp directory), printed at the end.
Usage: scripts/test-webui.py WHALE_BINARY MODEL.  Needs `pip install playwright` and the `chromium` Debian package
($CHROMIUM names another binary). Prints 'N passed, N failed'.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from playwright.sync_api import sync_playwright

WHALE, MODEL = sys.argv[1], sys.argv[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.environ.get("WHALE_TEST_ARTIFACTS") or tempfile.mkdtemp(prefix="whale-webui-")
passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([WHALE, "serve", MODEL, "--port", str(port), "--parallel", "2", "--ctx", "2048"],
                          stderr=subprocess.DEVNULL)
try:
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.3)
    else:
        raise SystemExit("whale serve did not come up")
    model_name = json.load(urllib.request.urlopen(base + "/v1/models"))["data"][0]["id"]
    question = "What is the capital of France? Answer in one sentence."
    expected = json.loads(subprocess.run(
        [WHALE, "run", MODEL, "--chat", "-p", question, "--temp", "0", "-n", "40", "--json"],
        capture_output=True, text=True, check=True).stdout)["text"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        foreign = []
        page.on("request", lambda request: None if request.url.startswith(base) else foreign.append(request.url))
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('model-name').textContent !== 'connecting…'")
        check("shows the model's name", page.text_content("#model-name") == model_name, page.text_content("#model-name"))

        # Settings: greedy, 40 tokens. They persist in localStorage across a reload.
        page.click("#settings-button")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "40")
        page.reload()
        page.wait_for_function("document.getElementById('model-name').textContent !== 'connecting…'")
        check("settings persist", page.input_value("#temperature") == "0" and page.input_value("#max-tokens") == "40")

        # Enter sends; the streamed answer equals whale run --chat --temp 0.
        page.fill("#input", question)
        page.press("#input", "Enter")
        page.wait_for_selector(".message.assistant[data-done]", timeout=120_000)
        answer = page.get_attribute(".message.assistant", "data-raw")
        check("Enter sends; the answer equals whale run --chat", answer == expected, repr((answer, expected)))
        check("the answer is shown, without the typing cursor",
              page.inner_text(".message.assistant .content").strip() != "" and page.locator(".cursor").count() == 0)
        check("the user's message is shown", page.inner_text(".message.user") == question)
        status = page.text_content("#status")
        check("tokens/s shown", "tokens/s" in status, status)
        page.screenshot(path=os.path.join(ARTIFACTS, "chat-desktop.png"))

        # Shift+Enter adds a line and sends nothing.
        page.fill("#input", "first line")
        page.press("#input", "Shift+Enter")
        page.keyboard.type("second line")
        check("Shift+Enter adds a line", page.input_value("#input") == "first line\nsecond line"
              and page.locator(".message.user").count() == 1)

        # Stop ends a long answer; the page and server go on.
        page.click("#settings-button")
        page.fill("#max-tokens", "")
        page.fill("#temperature", "0.8")
        page.fill("#input", "Write a very long story about a whale.")
        page.press("#input", "Enter")
        page.wait_for_function(
            "(document.querySelectorAll('.message.assistant')[1]?.dataset.raw || '').length > 20", timeout=120_000)
        page.click("#stop")
        page.wait_for_function("document.querySelectorAll('.message.assistant')[1].dataset.done", timeout=30_000)
        stopped = page.locator(".message.assistant").nth(1)
        check("Stop ends the answer", stopped.get_attribute("data-done") == "stopped" and page.is_visible("#send"),
              str(stopped.get_attribute("data-done")))
        check("stopped status", "stopped" in page.text_content("#status"), page.text_content("#status"))
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            check("server healthy after a stop", r.status == 200)

        # Markdown renders; HTML in the text stays text.
        html = page.evaluate(
            "(s) => renderMarkdown(s)",
            "# Title\n\nSome **bold** and `code`, a [link](https://example.com).\n\n- one\n- two\n\n"
            "```python\nprint('<b>')\n```\n\n<script>alert(1)</script>")
        check("Markdown renders", all(part in html for part in [
            "<h1>Title</h1>", "<strong>bold</strong>", "<code>code</code>", '<a href="https://example.com"',
            "<ul><li>one</li><li>two</li></ul>", '<pre><code class="language-python">print(\'&lt;b&gt;\')</code></pre>']),
            html)
        check("HTML in the text is escaped", "<script>" not in html and "&lt;script&gt;" in html, html)

        # Reasoning: a stubbed stream with reasoning_content shows a collapsible block above the answer.
        def reasoning_stream(route):
            chunks = [{"choices": [{"index": 0, "delta": {"reasoning_content": "Think about it."}}]},
                      {"choices": [{"index": 0, "delta": {"content": "**Yes.**"}, "finish_reason": "stop"}]}]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        page.route("**/v1/chat/completions", reasoning_stream)
        page.click("#new-chat")
        check("New chat clears the conversation", page.locator(".message").count() == 0)
        page.fill("#input", "Is it?")
        page.press("#input", "Enter")
        page.wait_for_selector(".message.assistant[data-done]")
        check("reasoning in a collapsible block",
              page.text_content("details.reasoning .thinking") == "Think about it."
              and page.inner_html(".message.assistant .content") == "<p><strong>Yes.</strong></p>"
              and not page.get_attribute("details.reasoning", "open"),
              page.inner_html(".message.assistant"))
        page.unroute("**/v1/chat/completions")

        # Phone width: no sideways overflow, the composer visible.
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        phone.on("request", lambda request: None if request.url.startswith(base) else foreign.append(request.url))
        phone.goto(base + "/")
        phone.fill("#input", "Hi! Give me a short list of three colors.")
        phone.press("#input", "Enter")
        phone.wait_for_selector(".message.assistant[data-done]", timeout=120_000)
        width = phone.evaluate("document.documentElement.scrollWidth")
        check("phone width: no horizontal overflow", width <= 390, str(width))
        check("phone width: composer visible", phone.is_visible("#input") and phone.is_visible("#send"))
        phone.screenshot(path=os.path.join(ARTIFACTS, "chat-phone.png"))

        check("no request leaves the server (no CDN)", not foreign, str(foreign))
        check("no script errors", not errors, str(errors))
        browser.close()
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()

print(f"screenshots: {ARTIFACTS}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
