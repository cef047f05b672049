"""The campaign's stages, in order (a module of its own so the CLI can offer them without
importing the runner, the SDK and the store)."""

STAGES = ("budget", "split", "rollouts", "pairs", "train", "eval")
