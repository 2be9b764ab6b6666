"""Compiled CPU kernels (mechlab/kernels/*.c), built on first use with the system C compiler (:mod:`.build`, cached
per source, flags and CPU), loaded with ctypes (:mod:`.libs`) and registered as PyTorch custom ops
``torch.ops.mechlab.*`` (:mod:`.ops`: schema, fake implementation, autograd, PyTorch fallback)."""

from mechlab.kernels.build import PORTABLE_MARCH, build, kernel_builds, native_march
from mechlab.kernels.libs import (
    BCJRKernel,
    QMatvecKernel,
    TrellisKernel,
    available,
    kernel_build,
    library,
    use_build,
)
from mechlab.kernels.ops import bcjr_soft, bcjr_soft_backward, decode_1mad, qmatvec_1mad, qmatvec_1mad_op, viterbi

__all__ = ["build", "kernel_builds", "native_march", "PORTABLE_MARCH", "kernel_build", "library", "available",
           "use_build", "BCJRKernel", "TrellisKernel", "QMatvecKernel", "viterbi", "bcjr_soft", "bcjr_soft_backward",
           "decode_1mad", "qmatvec_1mad", "qmatvec_1mad_op"]
