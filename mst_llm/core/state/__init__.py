"""Nodes in a tree and how they change: bookkeeping, change records, transactions, actions, reactivity,
lifecycle and the write path. Knows nothing of concrete types (see ``kinds``)."""
