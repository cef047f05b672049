"""The fold's parts, one per stage: pure (no I/O, no clock, no randomness), registered as
event-type plugins in dpo_tui.events.types. The stage services beside the runner
(dpo_tui.campaign.*) append the events these parts fold; nothing here reaches back up.
tests/test_architecture.py holds this package to importing nothing that does I/O."""
