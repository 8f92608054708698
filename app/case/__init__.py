"""The published ketamine case report as a FHIR R4B transaction Bundle."""
