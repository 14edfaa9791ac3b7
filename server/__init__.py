"""decaylab's API server: FastAPI app, run spec schemas, SQLAlchemy store and figures (no torch)."""
