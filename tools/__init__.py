"""Developer tools of trio-voice: the load-test tool, the benchmark harness and speech fixtures."""
