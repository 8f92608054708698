"""Clinical analyses of ketamine therapy (../shared/CASE.md section C), as pure functions over
FHIR resources given as JSON dicts."""
