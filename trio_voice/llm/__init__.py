"""The LLM: wire formats (OpenAI SSE, Ollama NDJSON), the streaming client, and the embedded llama.cpp server.

- ``wire``: sans-I/O request builders and reply-line parsers.
- ``client``: :class:`LLMClient`, one streamed reply at a time over a shared ``httpx.AsyncClient``.
- ``embedded``: :func:`serve_embedded_llm`, the supervised ``llama-server`` child serving SmolLM2.
"""

from trio_voice.llm.client import ChatResult as ChatResult
from trio_voice.llm.client import LLMClient as LLMClient
from trio_voice.llm.client import make_http_client as make_http_client
from trio_voice.llm.embedded import EmbeddedLLMStats as EmbeddedLLMStats
from trio_voice.llm.embedded import gguf_path as gguf_path
from trio_voice.llm.embedded import llama_server_path as llama_server_path
from trio_voice.llm.embedded import serve_embedded_llm as serve_embedded_llm
from trio_voice.llm.wire import Chunk as Chunk
from trio_voice.llm.wire import parse_ndjson_line as parse_ndjson_line
from trio_voice.llm.wire import parse_sse_line as parse_sse_line
