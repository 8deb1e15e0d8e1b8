"""Benchmarks against the stock torch path: `tritonalex bench` (command.py: the CLI), the layer
cases of a spec and their costs (layers.py), whole specs (net.py), the GPU measurement
(measure.py), the CPU check without a GPU (check.py), the table or JSON (render.py), the timing
harness and result files (harness.py) and the speedup plot (plot.py)."""
