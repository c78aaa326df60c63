"""Compressed audio in and out: incremental WebM/Opus, Ogg/Opus and raw Opus decoders.

Codecs are FFmpeg's (libopus) through PyAV; the Ogg and WebM framing on the input side is read here,
sans I/O, because FFmpeg's demuxers cannot be fed bytes as they arrive.
"""

from .decoders import INPUT_FORMATS as INPUT_FORMATS
from .decoders import InputDecoder as InputDecoder
from .decoders import OggOpusDecoder as OggOpusDecoder
from .decoders import OpusPacketDecoder as OpusPacketDecoder
from .decoders import WebmOpusDecoder as WebmOpusDecoder
from .decoders import make_input_decoder as make_input_decoder
