"""Synthetic exporters: traffic model, export encoders, capture writer, ground truth.

The demo, the tests and the benchmarks all draw their captures from here, so a run needs
no router and no external file.
"""
