"""Benchmarks against the stock torch path: `tritonalex bench` (command.py), the AlexNet layer
cases and their costs (layers.py), whole specs (net.py), the measurement harness and result files
(harness.py) and the speedup plot (plot.py)."""
