"""The fuzzing tool: hostile input against trio-voice's decoders, with a contract to check each answer by.

``python -m tools.fuzz --help`` for the command line. Modules: ``oracle`` (what a correct answer to any
input is; shared with the Hypothesis properties in ``tests/test_codec_properties.py``), ``targets``
(each decoder's input mapping, seeds and dictionary), ``worker`` (one atheris process), ``cli``.

This package's ``__init__`` imports nothing of trio_voice on purpose: the worker must import the code
under test itself, inside atheris' instrumentation, for the fuzzer to see its branches.
"""
