"""recsynth: synthetic user-item interaction logs, and the yardstick that scores them."""

__version__ = "0.1.0"
