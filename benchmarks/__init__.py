"""Benchmarks: ``python -m benchmarks`` runs them all and prints figures and ratios.

Every benchmark measures the suite against a baseline measured in the same run, on the same
machine and the same data, and states its target ratio. Inputs are generated under
``benchmarks/.data/`` (ignored by git) and reused between runs.
"""
