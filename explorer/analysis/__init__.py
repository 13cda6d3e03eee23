"""Analyses epidemiologists publish, on the lake's tables: distributed-lag non-linear models,
time to event, case-crossover and Table 1.

Pure functions and small result objects on pandas frames; :mod:`explorer.analysis.frames` builds
those frames from the lake.
"""
