"""What a plan can ask of a model's offer (a module of its own so the CLI can offer the
choices without importing the catalogue and the SDK)."""

NEEDS: tuple[str, ...] = ("serverless", "dedicated", "fine_tuning", "lora")
