"""Fake upstreams that tests and benchmarks run on loopback in place of real servers (vLLM, ...)."""
