"""trio-voice: a real-time voice AI server on Trio's structured concurrency."""

__version__ = "0.1.0"
