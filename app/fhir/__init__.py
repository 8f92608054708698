"""FHIR semantics: no HTTP, no SQL. The API layer calls in; storage is reached through store.py."""
