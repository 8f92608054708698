"""Search: the parameter registry, query parsing, index extraction."""
