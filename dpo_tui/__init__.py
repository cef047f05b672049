"""dpo-tui: an operator console for DPO fine-tuning campaigns on Together AI."""

__version__ = "0.1.0"
