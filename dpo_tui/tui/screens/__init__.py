"""The stage panes (one per tab) and the modal screens."""
