"""The library version, in a module of its own so that the core can write it into session logs."""

__version__ = "0.1.0"
