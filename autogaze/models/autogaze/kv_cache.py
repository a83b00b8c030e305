"""A KV cache that grows in place instead of concatenating every step.

transformers' DynamicCache does ``torch.cat`` on every update, copying the whole cache for each
decode step and layer (about a quarter of CPU generation time for a 16-frame clip, profiled).
Here each layer keeps a buffer with spare capacity, writes new keys/values into it and hands the
attention a view of the filled prefix; capacity doubles when exceeded (amortised O(1) per token).
"""
from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer


class GrowingKVLayer(DynamicLayer):
    """One layer's keys/values [B, H, L, d] stored in a buffer of capacity >= L."""

    def __init__(self, capacity: int = 1024):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k: Tensor | None = None
        self._v: Tensor | None = None

    def _reserve(self, like: Tensor, need: int) -> None:
        if self._k is not None and need <= self._k.shape[-2]:
            return
        cap = max(need, self.capacity, 2 * (0 if self._k is None else self._k.shape[-2]))
        B, H, _, d = like.shape
        k, v = like.new_empty(B, H, cap, d), like.new_empty(B, H, cap, d)
        if self._k is not None:
            k[:, :, : self.length] = self._k[:, :, : self.length]
            v[:, :, : self.length] = self._v[:, :, : self.length]
        self._k, self._v = k, v

    def update(self, key_states: Tensor, value_states: Tensor, cache_kwargs=None) -> tuple[Tensor, Tensor]:
        """key/value_states [B, H, n, d] -> all keys/values so far [B, H, L, d] (views of the buffer)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        end = self.length + key_states.shape[-2]
        self._reserve(key_states, end)
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens (negative: drop that many). Overridden because the
        next ``update`` writes at ``self.length``, which DynamicLayer's crop would leave stale."""
        if max_length < 0:
            max_length = self.length + max_length
        if self._k is None or self.length <= max_length:
            return
        self.length = max_length
        self.keys, self.values = self._k[:, :, :max_length], self._v[:, :, :max_length]


class GrowingKVCache(Cache):
    """A transformers Cache of GrowingKVLayer, one per decoder layer."""

    def __init__(self, num_layers: int, capacity: int = 1024):
        super().__init__(layers=[GrowingKVLayer(capacity) for _ in range(num_layers)])

    def crop(self, max_length: int) -> None:
        """Every layer back to its first ``max_length`` tokens (generation's look-ahead rolls back)."""
        for layer in self.layers:
            layer.crop(max_length)
