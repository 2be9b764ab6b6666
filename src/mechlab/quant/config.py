"""Quantisation configs: small frozen dataclasses, one per method (the torchao ``quantize_`` shape). Each lives in
its method's module under :mod:`mechlab.quant.methods` beside its registration; this module gathers them."""

from mechlab.quant.methods.gptq import GPTQConfig
from mechlab.quant.methods.rtn import RTNConfig
from mechlab.quant.methods.trellis import CODES, TrellisConfig
from mechlab.quant.registry import config_from_dict, config_to_dict

__all__ = ["RTNConfig", "GPTQConfig", "TrellisConfig", "CODES", "config_to_dict", "config_from_dict"]
