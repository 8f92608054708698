"""A FHIR R4B server for ketamine infusion therapy and the pain outcomes that follow it."""
