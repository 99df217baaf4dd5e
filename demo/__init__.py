"""The closed-loop demo: a drifting stream through a served model, detected, retrained and recovered."""
