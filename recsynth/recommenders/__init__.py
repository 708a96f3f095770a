"""Recommenders that score unseen users from their history (strong generalisation)."""
