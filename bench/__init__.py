"""rtgateway's benchmark suite and load tool: ``python -m bench SCENARIO``.

Run from the repository root (this package is not installed). Each scenario
measures a real gateway process against a baseline server under load from
separate processes; docs/benchmarks.rst says what every figure means.
"""
