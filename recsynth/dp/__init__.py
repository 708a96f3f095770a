"""Differentially private fitting (`fit --epsilon`): budget, mechanisms, DP-SGD critic."""
