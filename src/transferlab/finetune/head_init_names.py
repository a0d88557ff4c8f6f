"""The ways stage 1 of two-stage trains the new head (importable without torch, for the CLI and studies)."""

HEAD_INITS = ("probe", "sgd")
