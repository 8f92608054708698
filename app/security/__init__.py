"""Bearer token verification (tokens.py), the local development signing key (devkeys.py) and
the verifier the settings describe (setup.py). What a token allows is app/fhir/access.py; no
HTTP here: app/api/auth.py applies it."""
