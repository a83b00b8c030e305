"""Which of the gaze model's equal-valued code paths run: one frozen ``SpeedOptions``.

The fast paths compute the same values as the plain (reference) code; they exist for speed and
are kept next to the reference so that tests and benchmarks/gaze.py can compare the two. Every
switch between them is a field here, so a comparison flips one object instead of four settings:

* ``fast_decoder``: the decoder layers evaluated from their sub-modules (layers.py) with padded
  rows packed, or (False) each ``LlamaDecoderLayer``'s own forward with one additive mask. The
  fast decoder needs sdpa attention: under any other backend the reference decoder runs anyway.
* ``greedy_host_rows``: greedy chunk picks for at most this many rows use the host scan
  (``generation._pick_greedy``), larger batches the head-by-head loop (``_pick_sequential``,
  the reference); 0 always takes the loop. The scan wins where per-op cost dominates (few rows).
* ``onednn_linear``: the process-wide oneDNN route of ``autogaze.utils.linear`` (entry points
  install it with ``tune_cpu``). It is a global, not per model, because one process runs one
  kind of CPU; None leaves it as installed.
* ``attn_implementation``: the decoder's attention backend (``LlamaConfig._attn_implementation``,
  read by every layer at each forward); None leaves the model's configured backend (``attn_mode``).

``SpeedOptions()`` changes nothing on a fresh model (the defaults, bit for bit), and
``SpeedOptions.reference()`` selects every reference path. It keeps the configured attention
backend: the reference decoder is the layers' own forward under that backend, so fast vs
reference compares our code paths, not attention kernels (pass ``attn_implementation="eager"``
to ``replace`` for that). Apply with ``AutoGaze.set_speed_options`` or, restoring the previous
state on exit, the ``speed_options(model, opts)`` context manager.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import autogaze.utils.linear as fast_linear

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
GREEDY_HOST_ROWS = 16  # the default of SpeedOptions.greedy_host_rows


@dataclass(frozen=True)
class SpeedOptions:
    """Fast (default) or reference code paths of the gaze model; see the module docstring.

    fast_decoder:        bool   packed sub-module decoder layers (needs sdpa) or the layers' own forward.
    greedy_host_rows:    int    greedy picks of at most this many rows use the host scan (0: never).
    onednn_linear:       bool | None  process-wide oneDNN route for fp32 CPU products (None: unchanged).
    attn_implementation: str | None   decoder attention backend (None: unchanged).
    """

    fast_decoder: bool = True
    greedy_host_rows: int = GREEDY_HOST_ROWS
    onednn_linear: bool | None = None
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.greedy_host_rows, int) or self.greedy_host_rows < 0:
            raise ValueError(f"greedy_host_rows must be an int >= 0, got {self.greedy_host_rows!r}")
        if self.attn_implementation is not None and self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation must be None or one of {ATTN_IMPLEMENTATIONS}, "
                             f"got {self.attn_implementation!r}")

    @classmethod
    def reference(cls) -> "SpeedOptions":
        """Every reference path: the layers' own forward, the head-by-head greedy loop, F.linear."""
        return cls(fast_decoder=False, greedy_host_rows=0, onednn_linear=False)


def _decoder(model):
    """An AutoGaze or its GazeDecoder -> the GazeDecoder (duck-typed: no import cycle)."""
    return getattr(model, "decoder", model)


def current_speed_options(model) -> SpeedOptions:
    """The options in effect for ``model`` (AutoGaze or GazeDecoder), every field concrete."""
    dec = _decoder(model)
    return replace(dec.speed, onednn_linear=fast_linear.ENABLED,
                   attn_implementation=dec.model.config._attn_implementation)


def apply_speed_options(model, opts: SpeedOptions) -> SpeedOptions:
    """Put ``opts`` in effect for ``model`` (and the process-wide oneDNN route when not None);
    returns the options in effect before, which restore that state when applied."""
    if not isinstance(opts, SpeedOptions):
        raise TypeError(f"expected SpeedOptions, got {type(opts).__name__}")
    previous = current_speed_options(model)
    dec = _decoder(model)
    # the decoder keeps only what is per model; the other two live where their code reads them
    dec.speed = replace(opts, onednn_linear=None, attn_implementation=None)
    if opts.onednn_linear is not None:
        fast_linear.enable_onednn(opts.onednn_linear)
    if opts.attn_implementation is not None:
        dec.model.config._attn_implementation = opts.attn_implementation
    return previous


@contextlib.contextmanager
def speed_options(model, opts: SpeedOptions):
    """``opts`` in effect inside the block; the previous options (oneDNN route included) after it."""
    previous = apply_speed_options(model, opts)
    try:
        yield current_speed_options(model)
    finally:
        apply_speed_options(model, previous)
