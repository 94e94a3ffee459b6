"""The state tree: types, nodes, actions, views, snapshots and patches. Knows nothing of LLMs."""
