"""Training utilities shared by the MLP probe head and fine-tuning."""
