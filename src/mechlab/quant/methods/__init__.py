"""The built-in quantisation methods, one module each (config dataclass + its :func:`~mechlab.quant.registry.register`
call). :mod:`mechlab.quant.registry` imports every module of this package on first use, so adding a method is
adding one module here."""

# imported in this order, the built-in PTQ methods register (and ``--method`` lists them) as rtn, gptq, trellis
from mechlab.quant.methods.rtn import RTNConfig  # noqa: I001
from mechlab.quant.methods.gptq import GPTQConfig
from mechlab.quant.methods.trellis import CODES, TrellisConfig

__all__ = ["RTNConfig", "GPTQConfig", "TrellisConfig", "CODES"]
