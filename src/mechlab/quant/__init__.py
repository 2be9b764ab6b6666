"""Quantisation: ``quantize_(model, config)`` with RTN, GPTQ or trellis-coded (QTIP-style) configs, or any
method registered in :mod:`mechlab.quant.registry`."""

from mechlab.quant.api import (
    QuantReport,
    apply_quantization_spec,
    collect_hessians,
    quantization_spec,
    quantize_,
    target_linears,
)
from mechlab.quant.config import GPTQConfig, RTNConfig, TrellisConfig
from mechlab.quant.linear import IntLinear, QuantizedLinear, TrellisLinear
from mechlab.quant.registry import QuantMethod, register

__all__ = ["quantize_", "collect_hessians", "target_linears", "quantization_spec", "apply_quantization_spec",
           "QuantReport", "RTNConfig", "GPTQConfig", "TrellisConfig", "IntLinear", "TrellisLinear", "QuantizedLinear",
           "QuantMethod", "register"]
