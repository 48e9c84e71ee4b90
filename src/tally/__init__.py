"""Tally: self-hosted event tracking and product analytics."""

__version__ = "0.1.0"
