"""Pure checks over what a run observed (acknowledged versus delivered messages, the controller's
master history). They now live in `orbitmq.chaos.checker`; this module keeps the old import path
working for the demo's callers and tests."""

from __future__ import annotations

from orbitmq.chaos.checker import DeliveryReport, MasterChange, compare_delivery, epoch_conflicts

__all__ = ["DeliveryReport", "MasterChange", "compare_delivery", "epoch_conflicts"]
