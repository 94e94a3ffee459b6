"""What users do with a tree: navigate it, snapshot it, patch it, undo it, record it."""
