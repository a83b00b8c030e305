"""``F.linear`` that runs fp32 CPU matrix products on oneDNN instead of MKL's sgemm.

Why: torch's CPU build sends fp32 ``F.linear`` to MKL, whose sgemm takes its AVX2 code path on
AMD CPUs; oneDNN's inner product uses AVX-512 wherever the CPU has it. For the gaze decoder's
shapes (K = 192/384, N = 192..2660, thousands of rows) oneDNN is 1.4-2.2x faster on the 2-core
AMD EPYC we benchmark on (benchmarks/gaze.py), and about even elsewhere. Results are ordinary
fp32 products (a different summation order: differences at the 1e-7 level, like any two BLAS).

Used only where it is known to help: CPU, fp32, autocast off, and at least ``MIN_OUTPUTS`` output
values (rows x out_features; below that oneDNN's fixed cost per call loses to MKL, measured from
1 to 10 rows). Everything else, CUDA included, is plain ``F.linear``.
Off in library use: importing autogaze changes no kernel. Our entry points turn it on
(``autogaze.utils.runtime.tune_cpu``, like the allocator tuning); so can a user with
``enable_onednn()``, or through ``SpeedOptions.onednn_linear`` (autogaze/models/autogaze/speed.py)
with the model's other code-path choices. benchmarks/gaze.py times it on and off, side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ENABLED = False  # set by enable_onednn (entry points); read by use_onednn
MIN_OUTPUTS = 2560


def _onednn_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_AVAILABLE = _onednn_available()


def _inner_product(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x [..., K] @ weight[N, K]^T (+ bias [N]) on oneDNN -> [..., N]."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with both products of the input path on oneDNN; dW on the default BLAS
    (its long reduction over rows is where MKL does well, and oneDNN would need two transposed copies)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _inner_product(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _inner_product(grad, weight.t().contiguous(), None)
        g2 = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = g2.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)
        return grad_x, grad_w, grad_b


def enable_onednn(on: bool = True) -> bool:
    """Route eligible fp32 CPU products through oneDNN (``on``) or back to ``F.linear``. Returns
    whether the route is now in effect (False where this torch build lacks the oneDNN op)."""
    global ENABLED
    ENABLED = bool(on) and _AVAILABLE
    return ENABLED


def use_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether ``linear`` takes the oneDNN route for this input (see the module docstring)."""
    return (ENABLED and _AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.compiler.is_compiling()  # inductor picks its own kernels (and cannot lower this op)
            and weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and x.numel() // max(x.shape[-1], 1) * weight.shape[0] >= MIN_OUTPUTS)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``: x [..., K], weight [N, K], bias [N] or None -> [..., N]."""
    if use_onednn(x, weight):
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
            return _OneDNNLinear.apply(x, weight, bias)
        return _inner_product(x, weight, bias)  # no autograd: skip the Function's bookkeeping
    return F.linear(x, weight, bias)
