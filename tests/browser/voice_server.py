"""Test helper: a trio-voice server with real voice input and output and a scripted LLM, as a process.

Real Piper TTS, real whisper.cpp STT (the packaged tiny.en, converted once into the test cache) and
real Silero VAD; the LLM is ``trio_voice.testing.FakeLLM``, so replies are instant and predictable
("You said: <transcript>. ..."). Run ``python -m tests.browser.voice_server DATA_DIR`` from the repo
root: it listens on free loopback ports, prints the usual ``trio-voice ready: WS_URL  HTTP_URL/`` line
and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from functools import partial
from pathlib import Path

import trio

from tests.speech import whisper_model_path
from trio_voice.config import Config
from trio_voice.engines import Engines
from trio_voice.server import serve
from trio_voice.storage import open_store
from trio_voice.stt import Recognizer
from trio_voice.testing import FakeLLM
from trio_voice.tts import Synthesizer
from trio_voice.vad import SileroVAD

# A little time between tokens, so the reply visibly streams in the page.
TOKEN_DELAY = 0.03


async def main(data_dir: Path) -> None:
    config = Config(data_dir=data_dir, ws_port=0, http_port=0, stt_threads=1)
    tts = await trio.to_thread.run_sync(partial(Synthesizer.load, threads=1))
    stt = await trio.to_thread.run_sync(partial(Recognizer.load, whisper_model_path(), threads=1))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_store(config.database) as store, trio.open_nursery() as nursery:
            engines = Engines(
                llm=FakeLLM(token_delay=TOKEN_DELAY), tts=tts, stt=stt, vad_factory=SileroVAD, store=store
            )
            listening = await nursery.start(partial(serve, config, engines=engines))
            print(f"trio-voice ready: {listening.ws_url}  {listening.http_url}/", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]))
