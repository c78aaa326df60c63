"""The fuzzing tool (``python -m tools.fuzz codec``): its log reading, crash records, targets, and a short run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tools.fuzz import cli
from tools.fuzz.oracle import Finding
from tools.fuzz.targets import TARGETS
from tools.fuzz.worker import CRASH_LINE, crash_signature, write_crash

WORKER_LOG = f"""\
INFO: Seed: 1234
#2\tINITED cov: 150 ft: 280 corp: 37/2563b exec/s: 0 rss: 80Mb
#1048576\tpulse  cov: 190 ft: 380 corp: 80/7000b lim: 4096 exec/s: 26000 rss: 90Mb
{CRASH_LINE}\tUnicodeEncodeError@oracle.py:79<oracle.py:91\t/tmp/out/crashes/text-0123456789.input
#2000000\tNEW    cov: 195 ft: 394 corp: 84/7300b lim: 4096 exec/s: 26000 rss: 90Mb L: 9/4096 MS: 1 EraseBytes-
Done 2415480 runs in 91 second(s)
stat::number_of_executed_units: 2415480
stat::average_exec_per_sec:     26543
"""


def test_worker_log_gives_executions_coverage_and_crashes():
    """The final stats, the last status line and the worker's crash lines are read from a worker's stderr."""
    log = cli.parse_worker_log(WORKER_LOG)
    assert (log.executions, log.edges, log.features, log.corpus) == (2415480, 195, 394, 84)
    assert log.crashes == {
        "UnicodeEncodeError@oracle.py:79<oracle.py:91": "/tmp/out/crashes/text-0123456789.input"
    }
    assert log.death is None


def test_worker_log_of_a_libfuzzer_timeout_names_it_and_its_input():
    """A worker libFuzzer stopped early reports why, and where it wrote the input, without final stats."""
    log = cli.parse_worker_log(
        "#4096\tpulse  cov: 10 ft: 12 corp: 3/9b lim: 4 exec/s: 0 rss: 40Mb\n"
        "==4912== ERROR: libFuzzer: timeout after 10 seconds\n"
        "artifact_prefix='/o/text-'; Test unit written to /o/text-timeout-abc\n"
    )
    assert (log.executions, log.death, log.death_input) == (4096, "timeout", "/o/text-timeout-abc")


def test_dictionary_quotes_every_byte_libfuzzer_would_misread(tmp_path: Path):
    """Quotes, backslashes and non-printable bytes are written as \\xNN, one token per line."""
    path = tmp_path / "d.dict"
    cli.write_dictionary(path, [b'"type"', b"\\ud800", b"\r\n\xff"])
    assert path.read_text().splitlines() == [r'"\x22type\x22"', r'"\x5cud800"', r'"\x0d\x0a\xff"']


def _raise_in_a_helper() -> None:
    raise Finding("a lossy round trip")


def test_crash_signature_is_the_type_and_the_innermost_frames():
    """The same bug raised from the same place gives the same signature, whatever the input."""
    signatures = set()
    for _ in range(2):
        try:
            _raise_in_a_helper()
        except Finding as exc:
            signatures.add(crash_signature(exc))
    (signature,) = signatures
    assert signature.startswith("Finding@test_fuzz_tool.py:")
    assert " " not in signature  # the driver reads it from a tab-separated line


def test_crash_record_keeps_the_input_and_a_report_even_with_surrogates(tmp_path: Path):
    """The crashing input is written byte for byte; a report quoting a lone surrogate is still written."""
    try:
        "\ud800".encode()
    except UnicodeEncodeError as exc:
        path = write_crash(tmp_path / "crashes", "text", b'{"request_id":"\\ud800"}', exc)
    assert path.read_bytes() == b'{"request_id":"\\ud800"}'
    report = path.with_suffix(".txt").read_text(encoding="utf-8")
    assert "signature: UnicodeEncodeError@" in report and "\\ud800" in report


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_is_answered_within_the_contract(name: str):
    """Each target's seeds (protocol examples, one message of each type) pass the oracle: the fuzzer
    starts from inputs the decoders handle, so anything it reports is something it found."""
    target = TARGETS[name]
    seeds = target.seeds()
    assert seeds
    for seed in seeds:
        target.run(seed)


def test_text_seeds_include_every_documented_example():
    """Every client example in protocol/ is a seed of the text target."""
    seeds = TARGETS["text"].seeds()
    documented = cli.ROOT.joinpath("protocol/errors.md").read_text()
    assert b'[{"type": "ping"}]' in seeds and '[{"type": "ping"}]' in documented


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is the optional fuzz extra")
def test_a_short_fuzzing_run_reports_executions_and_no_crash(tmp_path: Path, capsys):
    """A few thousand executions per target through the real worker processes: figures, no crash."""
    status = cli.main(["codec", "--runs", "3000", "--target", "text,form", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    by_name = {stats["target"]: stats for stats in summary["targets"]}
    assert set(by_name) == {"text", "form"}
    for stats in by_name.values():
        assert stats["executions"] >= 3000
        assert stats["edges"] > 0 and stats["corpus"] > 0
        assert stats["crashes"] == {}
    assert "total: " in printed and "0 distinct crashes" in printed
    assert any((tmp_path / "corpus" / "text").iterdir())
