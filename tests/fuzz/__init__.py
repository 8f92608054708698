"""Property-based fuzzing of the REST API (hypothesis): resources and searches."""
