"""Leaves of the core: JSON pointers, frozen values, and the per-run context. They import nothing else of it."""
