"""Optimizers as optax chains built from config: schedules, parameter groups, the chain builder."""
