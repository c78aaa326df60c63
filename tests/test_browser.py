"""The demo page in a real Chromium: spoken and typed turns, interruption, and a refused token.

Playwright drives Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser). The fake
microphone plays a WAV of a question spoken by the project's Piper voice; the server is a subprocess
with real Piper, whisper.cpp and Silero VAD and the scripted LLM (``tests/browser/voice_server.py``),
or ``trio-voice serve --fake-engines`` where no model is needed. Skipped when Chromium or Playwright
is missing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.server_process import ServerProcess
from trio_voice.audio import float_to_pcm16, pcm16_to_float, resample, wav_bytes

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

CHROMIUM = Path("/usr/bin/chromium")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
SCREENSHOT = ARTIFACTS / "browser-conversation.png"

QUESTION = "What is the capital of France, and how many people live there?"
MIC_RATE = 48000
# Leading silence lets the page confirm its input rate first; the long tail ends the turn (the VAD
# needs 500 ms) and keeps the question from coming round again while the test runs.
LEAD_SILENCE_S = 0.5
TAIL_SILENCE_S = 60.0
UI_TIMEOUT_MS = 60_000  # per wait in the page: whisper and Piper share two busy cores

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def chromium_args(fake_audio: Path | None, *, deny_microphone: bool = False) -> list[str]:
    # The fake UI grants the microphone without asking; without it, headless Chromium refuses it.
    permission = "--deny-permission-prompts" if deny_microphone else "--use-fake-ui-for-media-stream"
    args = [
        permission,
        "--use-fake-device-for-media-stream",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if fake_audio is not None:
        # "%noloop": play the file once, then silence (Chromium loops it by default).
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    return args


def spoken_question_wav(path: Path) -> Path:
    """The question in the project's Piper voice, as a 16-bit mono 48 kHz WAV padded with silence."""
    from trio_voice.tts import Synthesizer

    voice = Synthesizer.load(threads=1)
    speech = resample(pcm16_to_float(voice.synthesize_sync(QUESTION)), voice.sample_rate, MIC_RATE)
    lead = np.zeros(int(LEAD_SILENCE_S * MIC_RATE), dtype=np.float32)
    tail = np.zeros(int(TAIL_SILENCE_S * MIC_RATE), dtype=np.float32)
    path.write_bytes(wav_bytes(float_to_pcm16(np.concatenate([lead, speech, tail])), MIC_RATE))
    return path


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("voice-server")
    server = ServerProcess(
        [sys.executable, "-m", "tests.browser.voice_server", str(data)], data / "server.log"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken_question_wav(tmp_path_factory.mktemp("audio") / "question.wav")


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        yield pw


def open_browser(
    playwright, tmp_path: Path, fake_audio: Path | None = None, *, deny_microphone: bool = False
):
    """A fresh headless Chromium with an empty profile; closed by the caller."""
    return playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=chromium_args(fake_audio, deny_microphone=deny_microphone),
        viewport={"width": 1000, "height": 900},
    )


def open_page(browser, http_url: str, query: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{http_url}/?{query}")
    page.errors = errors  # read by the tests: an uncaught exception in the page fails them
    return page


def stats(page) -> dict:
    return page.evaluate("window.trioVoice.stats")


@pytest.mark.models
def test_spoken_and_typed_turns_show_transcripts_replies_latency_and_play_audio(
    playwright, voice_server, question_wav, tmp_path
) -> None:
    """A spoken question gets partial then final transcripts and a spoken reply; a typed one gets a reply too."""
    browser = open_browser(playwright, tmp_path, question_wav)
    try:
        page = open_page(browser, voice_server.http_url, f"ws={voice_server.ws_url}")
        page.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        page.get_by_role("button", name="Start conversation").click()

        page.wait_for_selector(".msg.user.partial", timeout=UI_TIMEOUT_MS)
        final = page.wait_for_selector(".msg.user.final", timeout=UI_TIMEOUT_MS)
        assert "capital of france" in final.inner_text().lower()
        reply = page.wait_for_selector(".msg.assistant.done.completed", timeout=UI_TIMEOUT_MS)
        assert "You said: What is the capital of France" in reply.inner_text()
        assert reply.query_selector("[data-metric=first_audio_ms]") is not None
        assert reply.query_selector("[data-metric=speech_end_to_final_ms]") is not None
        page.wait_for_function("window.trioVoice.stats.scheduledSeconds > 1", timeout=UI_TIMEOUT_MS)
        spoken = stats(page)
        assert spoken["partials"] >= 1 and spoken["finals"] == 1
        assert spoken["chunks"] >= 1 and spoken["framesSent"] > 0
        assert page.get_by_role("button", name="Stop microphone").get_attribute("aria-pressed") == "true"

        page.get_by_role("textbox", name="Message", exact=True).fill("And what about Spain?")
        page.get_by_role("textbox", name="Message", exact=True).press("Enter")
        page.wait_for_selector(".msg.user.typed", timeout=UI_TIMEOUT_MS)
        page.wait_for_function(
            "document.querySelectorAll('.msg.assistant.done.completed').length === 2", timeout=UI_TIMEOUT_MS
        )
        second = page.query_selector_all(".msg.assistant.done.completed")[1]
        assert "You said: And what about Spain?" in second.inner_text()
        page.wait_for_function(
            f"window.trioVoice.stats.scheduledSeconds > {spoken['scheduledSeconds']}", timeout=UI_TIMEOUT_MS
        )
        assert stats(page)["seqGaps"] == 0 and page.errors == []

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        browser.close()


@pytest.mark.models
def test_low_bandwidth_speaks_webm_opus_in_and_plays_opus_replies(
    playwright, voice_server, question_wav, tmp_path
) -> None:
    """The low-bandwidth switch: the microphone goes out as MediaRecorder WebM/Opus (no PCM frames),
    whisper still hears the question, and the reply arrives as Ogg/Opus decoded by WebCodecs and played."""
    browser = open_browser(playwright, tmp_path, question_wav)
    try:
        page = open_page(browser, voice_server.http_url, f"ws={voice_server.ws_url}")
        page.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        page.get_by_label("Low bandwidth").check()
        page.wait_for_function(
            "window.trioVoice.stats.serverFormats.output === 'opus'", timeout=UI_TIMEOUT_MS
        )
        page.get_by_role("button", name="Start conversation").click()
        final = page.wait_for_selector(".msg.user.final", timeout=UI_TIMEOUT_MS)
        assert "capital of france" in final.inner_text().lower()
        reply = page.wait_for_selector(".msg.assistant.done.completed", timeout=UI_TIMEOUT_MS)
        assert "You said: What is the capital of France" in reply.inner_text()
        page.wait_for_function("window.trioVoice.stats.scheduledSeconds > 1", timeout=UI_TIMEOUT_MS)
        low = stats(page)
        assert low["serverFormats"] == {"input": "webm", "output": "opus"}
        assert low["recorderBlobs"] > 0 and low["framesSent"] == 0
        assert low["opusBytes"] > 0 and low["opusChunks"] > 0
        # Opus at 32 kbit/s: the reply's bytes are a small fraction of its PCM16 (22050 Hz: 353 kbit/s).
        assert low["opusBytes"] * 8 / low["scheduledSeconds"] < 64_000
        assert low["errors"] == [] and low["seqGaps"] == 0 and page.errors == []
    finally:
        browser.close()


@pytest.mark.models
def test_interrupt_stops_playback_at_once_and_reports_what_was_heard(
    playwright, voice_server, tmp_path
) -> None:
    """Interrupt silences the playing reply and sends response.truncate with the audio actually played."""
    browser = open_browser(playwright, tmp_path)
    try:
        page = open_page(browser, voice_server.http_url, f"ws={voice_server.ws_url}")
        page.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        page.get_by_role("textbox", name="Message", exact=True).fill("Tell me a long story about the sea.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function("window.trioVoice.stats.sounding", timeout=UI_TIMEOUT_MS)

        page.get_by_role("button", name="Interrupt").click()

        after = stats(page)
        assert after["sounding"] is False and after["stops"] == 1 and after["truncations"] == 1
        reply = page.wait_for_selector(".msg.assistant[data-heard-ms]", timeout=UI_TIMEOUT_MS)
        heard_ms = int(reply.get_attribute("data-heard-ms"))
        assert 0 <= heard_ms < after["scheduledSeconds"] * 1000
        assert "audio stopped at" in reply.inner_text()
        sync_api.expect(page.get_by_role("button", name="Interrupt")).to_be_disabled(timeout=UI_TIMEOUT_MS)
        page.wait_for_function("window.trioVoice.stats.truncatesSent === 1", timeout=UI_TIMEOUT_MS)

        # The server answers messages in order: once the next reply is done, a refusal of the
        # truncate would have arrived.
        page.get_by_role("textbox", name="Message", exact=True).fill("Thanks.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(
            "document.querySelectorAll('.msg.assistant.done').length === 2", timeout=UI_TIMEOUT_MS
        )
        assert stats(page)["errors"] == [] and page.errors == []
    finally:
        browser.close()


def fake_engines_server(tmp_path: Path, *options: str) -> ServerProcess:
    """``trio-voice serve --fake-engines`` on free ports: for what the page does without models."""
    argv = [
        sys.executable,
        "-m",
        "trio_voice.cli",
        "serve",
        "--fake-engines",
        "--port",
        "0",
        "--http-port",
        "0",
    ]
    return ServerProcess([*argv, "--data-dir", str(tmp_path / "data"), *options], tmp_path / "server.log")


def test_a_wrong_token_is_reported_and_the_right_one_connects(playwright, tmp_path) -> None:
    """A refused token gets a clear message and no retry loop; entering the right one connects."""
    server = fake_engines_server(tmp_path, "--token", "right-token")
    browser = open_browser(playwright, tmp_path)
    try:
        page = open_page(browser, server.http_url, f"ws={server.ws_url}&token=wrong-token")
        page.wait_for_selector("#conn[data-state=error]", timeout=UI_TIMEOUT_MS)
        assert "refused the access token" in page.get_by_role("alert").inner_text()
        assert page.locator("#settings").get_attribute("open") is not None

        page.get_by_label("Access token").fill("right-token")
        page.get_by_role("button", name="Reconnect").click()
        page.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        sync_api.expect(page.locator("#notice")).to_be_hidden()
        assert page.errors == []
    finally:
        browser.close()
        server.stop()


def test_a_full_server_is_reported_and_retried_until_a_place_frees_up(playwright, tmp_path) -> None:
    """server_full (close 1013) shows a notice and backs off; the page connects once a session ends."""
    server = fake_engines_server(tmp_path, "--max-sessions", "1")
    browser = open_browser(playwright, tmp_path)
    try:
        first = open_page(browser, server.http_url, f"ws={server.ws_url}")
        first.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        second = open_page(browser, server.http_url, f"ws={server.ws_url}")
        second.wait_for_selector("#conn[data-state=retrying]", timeout=UI_TIMEOUT_MS)
        assert "The server is full right now" in second.locator("#notice").inner_text()

        first.close()
        second.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        sync_api.expect(second.locator("#notice")).to_be_hidden()
        assert second.errors == []
    finally:
        browser.close()
        server.stop()


def test_a_refused_microphone_is_explained_and_typing_still_works(playwright, tmp_path) -> None:
    """When the microphone is refused the page says how to allow it, stays off, and text still gets replies."""
    server = fake_engines_server(tmp_path)
    browser = open_browser(playwright, tmp_path, deny_microphone=True)
    try:
        page = open_page(browser, server.http_url, f"ws={server.ws_url}")
        page.wait_for_selector("#conn[data-state=connected]", timeout=UI_TIMEOUT_MS)
        page.get_by_role("button", name="Start conversation").click()
        sync_api.expect(page.locator("#notice")).to_contain_text("Microphone permission was refused")
        assert page.locator("#mic").get_attribute("aria-pressed") == "false"

        page.get_by_role("textbox", name="Message", exact=True).fill("Hello there")
        page.get_by_role("textbox", name="Message", exact=True).press("Enter")
        reply = page.wait_for_selector(".msg.assistant.done.completed", timeout=UI_TIMEOUT_MS)
        assert "You said: Hello there" in reply.inner_text()
        assert stats(page)["framesSent"] == 0 and page.errors == []
    finally:
        browser.close()
        server.stop()
