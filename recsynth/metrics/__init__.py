"""Utility, fidelity, privacy and fairness figures for synthetic interaction logs."""
