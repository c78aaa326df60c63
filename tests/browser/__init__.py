"""Helpers for the browser test (tests/test_browser.py): a voice server to run as a subprocess."""
