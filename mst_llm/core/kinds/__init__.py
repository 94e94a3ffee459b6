"""One module per kind of type, each holding its Type and its Node, and annotations -> types."""
