"""Tests of the CTranslate2 → whisper.cpp converter: parsing, name mapping, mel filters, the ggml file."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.speech import models_cache_dir
from trio_voice.errors import ModelPreparationError
from trio_voice.models.whisper_ggml import (
    GGML_MAGIC,
    WhisperHParams,
    convert,
    default_ct2_dir,
    ensure_whisper_model,
    mel_filters,
    read_ct2_model,
    regular_tokens,
    token_bytes,
    whisper_tensors,
    write_ggml,
)

# --- a tiny synthetic whisper in CTranslate2 format ------------------------------------------------

D, N_MELS, N_VOCAB, AUDIO_CTX, TEXT_CTX = 8, 4, 6, 5, 3
_CODES = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 4}


def ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def ct2_bytes(variables: dict[str, np.ndarray], aliases=(), *, version=6, spec="WhisperSpec") -> bytes:
    """Serialise variables the way CTranslate2's ``ModelSpec.save`` does."""
    out = struct.pack("<I", version) + ct2_string(spec) + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        value = np.asarray(value)
        out += ct2_string(name) + struct.pack("<B", value.ndim)
        out += b"".join(struct.pack("<I", d) for d in value.shape)
        out += struct.pack("<BI", _CODES[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        out += ct2_string(alias) + ct2_string(target)
    return out


def tiny_whisper_variables() -> dict[str, np.ndarray]:
    """One encoder and one decoder layer of width 8, every value distinct, key biases zero."""
    rng = np.random.default_rng(7)
    v: dict[str, np.ndarray] = {}

    def f16(*shape):
        return rng.standard_normal(shape).astype("<f2")

    def add_linear(prefix, rows, cols, zero_rows=None):
        v[f"{prefix}/weight"] = f16(rows, cols)
        bias = f16(rows)
        if zero_rows is not None:
            bias[zero_rows] = 0
        v[f"{prefix}/bias"] = bias

    def add_norm(prefix):
        v[f"{prefix}/gamma"], v[f"{prefix}/beta"] = f16(D), f16(D)

    v["decoder/num_heads"] = np.array(2, dtype="<i2")
    v["decoder/embeddings/weight"] = f16(N_VOCAB, D)
    v["decoder/position_encodings/encodings"] = f16(TEXT_CTX, D)
    v["decoder/scale_embeddings"] = np.array(1, dtype="i1")
    v["encoder/num_heads"] = np.array(2, dtype="<i2")
    v["encoder/conv1/weight"], v["encoder/conv1/bias"] = f16(D, N_MELS, 3), f16(D)
    v["encoder/conv2/weight"], v["encoder/conv2/bias"] = f16(D, D, 3), f16(D)
    v["encoder/position_encodings/encodings"] = f16(AUDIO_CTX, D)
    for side in ("encoder", "decoder"):
        layer = f"{side}/layer_0"
        add_norm(f"{layer}/self_attention/layer_norm")
        add_linear(f"{layer}/self_attention/linear_0", 3 * D, D, zero_rows=slice(D, 2 * D))
        add_linear(f"{layer}/self_attention/linear_1", D, D)
        if side == "decoder":
            add_norm(f"{layer}/attention/layer_norm")
            add_linear(f"{layer}/attention/linear_0", D, D)
            add_linear(f"{layer}/attention/linear_1", 2 * D, D, zero_rows=slice(0, D))
            add_linear(f"{layer}/attention/linear_2", D, D)
        add_norm(f"{layer}/ffn/layer_norm")
        add_linear(f"{layer}/ffn/linear_0", 4 * D, D)
        add_linear(f"{layer}/ffn/linear_1", D, 4 * D)
        add_norm(f"{side}/layer_norm")
    return v


TINY_VOCAB = ["!", "Ġhello", "Ċ", "Ã©", "<|endoftext|>", "<|startoftranscript|>"]


def write_tiny_ct2_dir(path: Path, variables=None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    variables = tiny_whisper_variables() if variables is None else variables
    aliases = [("decoder/projection/weight", "decoder/embeddings/weight")]
    (path / "model.bin").write_bytes(ct2_bytes(variables, aliases))
    (path / "vocabulary.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return path


# --- reading ggml back, the way whisper.cpp does ---------------------------------------------------


def read_ggml(data: bytes) -> dict:
    """Parse a whisper.cpp ggml file into its header, mel filters, vocabulary and tensor index."""
    f = io.BytesIO(data)

    def ints(n):
        return struct.unpack(f"<{n}i", f.read(4 * n))

    (magic,) = ints(1)
    hparams = WhisperHParams(*ints(11))
    rows, cols = ints(2)
    filters = np.frombuffer(f.read(4 * rows * cols), dtype="<f4").reshape(rows, cols)
    vocab = [f.read(ints(1)[0]) for _ in range(ints(1)[0])]
    tensors = {}
    while header := f.read(12):
        n_dims, name_len, ftype = struct.unpack("<3i", header)
        dims = ints(n_dims)
        name = f.read(name_len).decode()
        dtype = np.dtype("<f4" if ftype == 0 else "<f2")
        count = int(np.prod(dims))
        tensors[name] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype).reshape(dims[::-1])
    return {"magic": magic, "hparams": hparams, "filters": filters, "vocab": vocab, "tensors": tensors}


def tiny_ggml() -> dict:
    out = io.BytesIO()
    write_ggml(out, read_ct2_model(ct2_bytes(tiny_whisper_variables())), TINY_VOCAB)
    return read_ggml(out.getvalue())


# --- CTranslate2 parsing ---------------------------------------------------------------------------


def test_read_ct2_model_returns_every_variable_with_shape_dtype_and_values():
    """Names, shapes, dtypes and values of the variables survive the round trip through model.bin."""
    variables = tiny_whisper_variables()
    model = read_ct2_model(ct2_bytes(variables))
    assert model.spec == "WhisperSpec"
    assert model.revision == 3
    assert model.variables.keys() == variables.keys()
    for name, value in variables.items():
        assert model.variables[name].dtype == value.dtype
        np.testing.assert_array_equal(model.variables[name], value)


def test_read_ct2_model_reads_aliases():
    """The alias table after the variables is returned as alias → target."""
    data = ct2_bytes({"a": np.zeros(2, "<f4")}, [("b", "a")])
    assert read_ct2_model(data).aliases == {"b": "a"}


def test_read_ct2_model_widens_bfloat16():
    """bf16 variables (dtype code 5) come back as the float32 values they encode."""
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2")
    data = struct.pack("<I", 6) + ct2_string("S") + struct.pack("<II", 1, 1)
    data += ct2_string("x") + struct.pack("<BIBI", 1, 3, 5, raw.nbytes) + raw.tobytes()
    np.testing.assert_array_equal(read_ct2_model(data).variables["x"], values)


def test_read_ct2_model_rejects_truncated_data():
    """A file cut short is reported as corrupt, not read past its end."""
    data = ct2_bytes(tiny_whisper_variables())
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_ct2_model(data[: len(data) // 2])


def test_read_ct2_model_rejects_old_binary_versions():
    """Binary versions before 5 use another layout and are refused."""
    with pytest.raises(ValueError, match="too old"):
        read_ct2_model(ct2_bytes({}, version=4))


# --- mapping ---------------------------------------------------------------------------------------


def test_hparams_follow_from_shapes_and_head_counts():
    """Vocabulary, widths, contexts, layers and heads are read off the variables."""
    hp = WhisperHParams.from_ct2(read_ct2_model(ct2_bytes(tiny_whisper_variables())))
    assert hp == WhisperHParams(
        n_vocab=N_VOCAB,
        n_audio_ctx=AUDIO_CTX,
        n_audio_state=D,
        n_audio_head=2,
        n_audio_layer=1,
        n_text_ctx=TEXT_CTX,
        n_text_state=D,
        n_text_head=2,
        n_text_layer=1,
        n_mels=N_MELS,
    )


def test_fused_self_attention_is_split_into_query_key_value():
    """linear_0's rows are q, k, v in that order; the key keeps its weight and loses its zero bias."""
    variables = tiny_whisper_variables()
    tensors = dict(whisper_tensors(read_ct2_model(ct2_bytes(variables))))
    w = variables["encoder/layer_0/self_attention/linear_0/weight"]
    b = variables["encoder/layer_0/self_attention/linear_0/bias"]
    np.testing.assert_array_equal(tensors["encoder.blocks.0.attn.query.weight"], w[:D])
    np.testing.assert_array_equal(tensors["encoder.blocks.0.attn.key.weight"], w[D : 2 * D])
    np.testing.assert_array_equal(tensors["encoder.blocks.0.attn.value.weight"], w[2 * D :])
    np.testing.assert_array_equal(tensors["encoder.blocks.0.attn.value.bias"], b[2 * D :])
    assert "encoder.blocks.0.attn.key.bias" not in tensors


def test_fused_cross_attention_key_value_is_split():
    """The decoder's cross-attention linear_1 holds k then v; linear_0 is the query, linear_2 the output."""
    variables = tiny_whisper_variables()
    tensors = dict(whisper_tensors(read_ct2_model(ct2_bytes(variables))))
    src = "decoder/layer_0/attention"
    np.testing.assert_array_equal(
        tensors["decoder.blocks.0.cross_attn.key.weight"], variables[f"{src}/linear_1/weight"][:D]
    )
    np.testing.assert_array_equal(
        tensors["decoder.blocks.0.cross_attn.value.bias"], variables[f"{src}/linear_1/bias"][D:]
    )
    np.testing.assert_array_equal(
        tensors["decoder.blocks.0.cross_attn.query.weight"], variables[f"{src}/linear_0/weight"]
    )
    np.testing.assert_array_equal(
        tensors["decoder.blocks.0.cross_attn.out.bias"], variables[f"{src}/linear_2/bias"]
    )
    np.testing.assert_array_equal(
        tensors["decoder.blocks.0.cross_attn_ln.weight"], variables[f"{src}/layer_norm/gamma"]
    )


def test_every_whisper_cpp_tensor_is_produced_once():
    """The tensor names are exactly the openai/whisper state dict whisper.cpp loads."""
    names = [name for name, _ in whisper_tensors(read_ct2_model(ct2_bytes(tiny_whisper_variables())))]
    assert len(names) == len(set(names))
    attn = [
        "query.weight",
        "query.bias",
        "key.weight",
        "value.weight",
        "value.bias",
        "out.weight",
        "out.bias",
    ]
    block = [f"attn.{n}" for n in attn] + [
        f"{m}.{p}" for m in ("attn_ln", "mlp.0", "mlp.2", "mlp_ln") for p in ("weight", "bias")
    ]
    cross = [f"cross_attn.{n}" for n in attn] + ["cross_attn_ln.weight", "cross_attn_ln.bias"]
    expected = {
        "encoder.positional_embedding",
        *(f"encoder.conv{i}.{p}" for i in (1, 2) for p in ("weight", "bias")),
        *(f"encoder.blocks.0.{n}" for n in block),
        "encoder.ln_post.weight",
        "encoder.ln_post.bias",
        "decoder.positional_embedding",
        "decoder.token_embedding.weight",
        *(f"decoder.blocks.0.{n}" for n in block + cross),
        "decoder.ln.weight",
        "decoder.ln.bias",
    }
    assert set(names) == expected


def test_nonzero_key_bias_is_refused():
    """A non-zero key bias means the rows are not q, k, v as assumed: conversion stops."""
    variables = tiny_whisper_variables()
    variables["encoder/layer_0/self_attention/linear_0/bias"][D] = 1.0
    with pytest.raises(ValueError, match="key bias is not zero"):
        list(whisper_tensors(read_ct2_model(ct2_bytes(variables))))


# --- vocabulary ------------------------------------------------------------------------------------


def test_token_bytes_undoes_gpt2_byte_mapping():
    """GPT-2's printable stand-ins turn back into raw bytes: space, newline and UTF-8 pieces."""
    assert token_bytes(["!", "Ġhello", "Ċ", "Ã©"]) == [b"!", b" hello", b"\n", "é".encode()]


def test_regular_tokens_stop_before_endoftext():
    """Only the BPE tokens before <|endoftext|> are written; whisper.cpp makes the special ones."""
    assert regular_tokens(TINY_VOCAB) == TINY_VOCAB[:4]


# --- mel filters -----------------------------------------------------------------------------------


def test_mel_filters_shape_and_sign():
    """80 filters over the 201 bins of a 400-point FFT, float32, never negative."""
    filters = mel_filters()
    assert filters.shape == (80, 201)
    assert filters.dtype == np.float32
    assert filters.min() >= 0


def test_each_mel_filter_is_one_triangle():
    """Every filter is non-zero on one run of bins, rising to a single peak and then falling."""
    for row in mel_filters().astype(np.float64):
        (support,) = np.nonzero(row)
        assert support.size >= 1
        assert np.array_equal(support, np.arange(support[0], support[-1] + 1))
        values = row[support[0] : support[-1] + 1]
        peak = int(np.argmax(values))
        assert np.all(np.diff(values[: peak + 1]) >= 0)
        assert np.all(np.diff(values[peak:]) <= 0)


def test_mel_filters_have_slaney_unit_area():
    """Slaney normalisation: each triangle has unit area in Hz, so wide filters sum to 1 / bin width."""
    filters = mel_filters().astype(np.float64)
    bin_hz = 16000 / 400
    areas = filters.sum(axis=1) * bin_hz
    # Filters wider than four bins (from 45 up) integrate accurately; narrow ones only roughly.
    np.testing.assert_allclose(areas[45:], 1.0, rtol=0.02)
    np.testing.assert_allclose(areas, 1.0, rtol=0.1)


def test_mel_filters_first_filter_matches_hand_computation():
    """Filter 0 spans 0 to 74.5 Hz (two slaney mel steps of 45.245/81): at 40 Hz it is 0.02486."""
    assert mel_filters()[0, 1] == pytest.approx(0.0248626, rel=1e-4)
    assert np.count_nonzero(mel_filters()[0]) == 1


def test_mel_filter_peaks_rise_with_frequency():
    """Filter centres are ordered from low to high frequency."""
    peaks = mel_filters().argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)
    assert peaks[-1] > 190


# --- the ggml file ---------------------------------------------------------------------------------


def test_ggml_header_holds_magic_hparams_and_mel_filters():
    """The file starts with the ggml magic, the eleven hyper-parameters and the mel filterbank."""
    ggml = tiny_ggml()
    assert ggml["magic"] == GGML_MAGIC
    assert ggml["hparams"].n_vocab == N_VOCAB
    assert ggml["hparams"].ftype == 1
    np.testing.assert_array_equal(ggml["filters"], mel_filters(n_mels=N_MELS))


def test_ggml_vocabulary_is_raw_bytes_of_regular_tokens():
    """The vocabulary section holds the regular tokens as raw bytes."""
    assert tiny_ggml()["vocab"] == [b"!", b" hello", b"\n", "é".encode()]


def test_ggml_tensor_types_and_shapes():
    """1-D tensors, conv biases (as n × 1) and positional embeddings are f32; matrices f16; values kept."""
    variables = tiny_whisper_variables()
    tensors = tiny_ggml()["tensors"]
    assert tensors["encoder.conv1.bias"].shape == (D, 1)
    assert tensors["encoder.conv1.bias"].dtype == np.float32
    assert tensors["encoder.positional_embedding"].dtype == np.float32
    assert tensors["decoder.blocks.0.mlp_ln.bias"].dtype == np.float32
    assert tensors["encoder.conv1.weight"].dtype == np.float16
    assert tensors["encoder.conv1.weight"].shape == (D, N_MELS, 3)
    np.testing.assert_array_equal(
        tensors["decoder.token_embedding.weight"], variables["decoder/embeddings/weight"]
    )
    np.testing.assert_array_equal(
        tensors["encoder.conv2.bias"][:, 0], variables["encoder/conv2/bias"].astype(np.float32)
    )


def test_convert_is_deterministic_and_leaves_no_temporary_files(tmp_path):
    """Converting the same input twice gives identical bytes, and only the output file remains."""
    src = write_tiny_ct2_dir(tmp_path / "ct2")
    convert(src, tmp_path / "out" / "a.bin")
    convert(src, tmp_path / "out" / "b.bin")
    assert (tmp_path / "out" / "a.bin").read_bytes() == (tmp_path / "out" / "b.bin").read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin", "b.bin"]


def test_convert_failure_raises_model_preparation_error_and_writes_nothing(tmp_path):
    """A model missing a variable is reported with its name, and no partial output is left behind."""
    variables = tiny_whisper_variables()
    del variables["decoder/layer_0/ffn/linear_1/bias"]
    src = write_tiny_ct2_dir(tmp_path / "ct2", variables)
    with pytest.raises(ModelPreparationError, match=r"decoder/layer_0/ffn/linear_1/bias"):
        convert(src, tmp_path / "out" / "model.bin")
    assert list((tmp_path / "out").iterdir()) == []


def test_convert_reports_a_missing_model_directory(tmp_path):
    """A directory without model.bin gives a ModelPreparationError naming it."""
    with pytest.raises(ModelPreparationError, match="cannot read"):
        convert(tmp_path / "nowhere", tmp_path / "out.bin")


def test_ensure_whisper_model_converts_once_and_reuses_the_cache(tmp_path):
    """The second call returns the same cached file without writing it again."""
    src = write_tiny_ct2_dir(tmp_path / "ct2")
    first = ensure_whisper_model(tmp_path / "cache", src)
    mtime = first.stat().st_mtime_ns
    second = ensure_whisper_model(tmp_path / "cache", src)
    assert second == first
    assert second.stat().st_mtime_ns == mtime


def test_ensure_whisper_model_names_the_cache_by_input(tmp_path):
    """A different input model gets a different cache file."""
    first = ensure_whisper_model(tmp_path / "cache", write_tiny_ct2_dir(tmp_path / "a"))
    variables = tiny_whisper_variables()
    variables["encoder/conv1/bias"][0] += 1
    second = ensure_whisper_model(tmp_path / "cache", write_tiny_ct2_dir(tmp_path / "b", variables))
    assert first != second


# --- the real packaged model -----------------------------------------------------------------------


@pytest.mark.models
def test_packaged_model_converts_to_tiny_en_hparams():
    """The packaged model converts to a ggml file with tiny.en's hyper-parameters and vocabulary."""
    ggml = read_ggml(ensure_whisper_model(models_cache_dir()).read_bytes())
    assert ggml["hparams"] == WhisperHParams(
        n_vocab=51864,
        n_audio_ctx=1500,
        n_audio_state=384,
        n_audio_head=6,
        n_audio_layer=4,
        n_text_ctx=448,
        n_text_state=384,
        n_text_head=6,
        n_text_layer=4,
        n_mels=80,
    )
    assert len(ggml["vocab"]) == 50256
    assert len(ggml["tensors"]) == 167


@pytest.mark.models
def test_packaged_model_conversion_is_deterministic(tmp_path):
    """A fresh conversion of the packaged model is byte-identical to the cached one."""
    cached = ensure_whisper_model(models_cache_dir())
    convert(default_ct2_dir(), tmp_path / "fresh.bin")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (cached, tmp_path / "fresh.bin")]
    assert digest[0] == digest[1]


@pytest.mark.models
def test_packaged_model_loads_in_whisper_cpp():
    """whisper.cpp accepts the converted file and reports tiny.en's shape."""
    import _pywhispercpp as pw

    from trio_voice.stt import Recognizer

    recognizer = Recognizer.load(ensure_whisper_model(models_cache_dir()))
    ctx = recognizer._model._ctx
    assert pw.whisper_model_n_vocab(ctx) == 51864
    assert pw.whisper_model_n_text_layer(ctx) == 4
    assert pw.whisper_model_n_mels(ctx) == 80
