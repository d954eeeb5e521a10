"""Load tests: a locust file for ad-hoc use (the latency-budget runner builds on it)."""
