"""HTTP: the only package that imports FastAPI/Starlette. Handlers are thin."""
