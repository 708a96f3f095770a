"""The HTML report of `recsynth evaluate --html` and the training curves of `recsynth fit`.

matplotlib is imported only here, and only when a plot is drawn, so the CLI starts fast.
"""
