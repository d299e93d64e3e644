"""`benchmarks/sparse_linear.py` with cuBLAS's TF32 switched by PREDSPARSE_TF32 (0: off, 1: on).

TF32 changes only float32 matmuls: the `dense` (nn.Linear, cuBLAS), `masked` and `csr` rivals and
SparseLinear's dense blocks; the Triton gathers multiply in float32 either way and bfloat16 runs do
not use it. PyTorch's default is off. All arguments go to sparse_linear.py unchanged, e.g.

    PREDSPARSE_TF32=1 python benchmarks/gpu_layer.py --device cuda --dtype float32 --quick --out DIR

The CSV has no TF32 column (give each setting its own --out); benchmarks/gpu_check.sh runs this.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sparse_linear as bench  # noqa: E402  (benchmarks/sparse_linear.py, the layer benchmark)

PRECISION = {"0": "highest", "1": "high"}  # torch's float32 matmul precision: IEEE float32, or TF32


def main(argv: list[str] | None = None) -> int:
    tf32 = os.environ.get("PREDSPARSE_TF32", "0")
    if tf32 not in PRECISION:
        sys.exit(f"gpu_layer.py: PREDSPARSE_TF32={tf32!r}: must be 0 (TF32 off) or 1 (TF32 on)")
    torch.set_float32_matmul_precision(PRECISION[tf32])
    print(f"TF32 {'on' if tf32 == '1' else 'off'} (float32 matmul precision {torch.get_float32_matmul_precision()!r})",
          flush=True)
    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
