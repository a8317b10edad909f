"""Tools for developing parkwatch, never used by a running gateway: the import-graph check, and
the private broker and time-series server the demo, the tests and the benchmarks start."""
