"""Junction: self-hosted cross-channel customer messaging."""

__version__ = "0.1.0"
