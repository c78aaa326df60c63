"""Compressed audio in and out: incremental Opus/WebM/Ogg decoders and Opus/MP3/AAC/FLAC encoders.

Codecs are FFmpeg's (libopus, LAME, FFmpeg's AAC and FLAC) through PyAV; the Ogg and WebM framing on
the input side is read here, sans I/O, because FFmpeg's demuxers cannot be fed bytes as they arrive.
"""

from .decoders import INPUT_FORMATS as INPUT_FORMATS
from .decoders import InputDecoder as InputDecoder
from .decoders import OggOpusDecoder as OggOpusDecoder
from .decoders import OpusPacketDecoder as OpusPacketDecoder
from .decoders import WebmOpusDecoder as WebmOpusDecoder
from .decoders import make_input_decoder as make_input_decoder
from .encoders import OUTPUT_FORMATS as OUTPUT_FORMATS
from .encoders import MuxedEncoder as MuxedEncoder
from .encoders import OggOpusEncoder as OggOpusEncoder
from .encoders import OutputEncoder as OutputEncoder
from .encoders import encoded_sample_rate as encoded_sample_rate
from .encoders import make_output_encoder as make_output_encoder
from .encoders import pcm_pieces as pcm_pieces
