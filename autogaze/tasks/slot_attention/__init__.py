"""Slot attention task: SlotContrast-style object slots inferred from the gazed patches of a frozen tower's
features; the reward is minus the per-frame feature reconstruction loss of the slots.

Modules: config (the task keys), slots (slot attention, init, predictor), decoder (the alpha-mixed MLP
decoder), losses (feature reconstruction, slot-slot contrast), model (the recurrent slot model and
``SlotState``), task (the public ``SlotAttentionTask``).
"""
from .config import SlotTaskConfig, parse_slot_task_config
from .model import GazedSlotModel, SlotState
from .task import SlotAttentionTask

__all__ = ["SlotAttentionTask", "SlotState", "GazedSlotModel", "SlotTaskConfig", "parse_slot_task_config"]
