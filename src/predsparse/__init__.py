"""predsparse: pre-defined sparse neural networks.

Connectivity patterns with fixed fan-in fi and fan-out fo per junction, the scatter metric, fast sparse
layers, and the pipeline that reproduces "Characterizing Sparse Connectivity Patterns in Neural Networks"
(Dey, Huang, Beerel, Chugg).
"""

__version__ = "0.1.0"
