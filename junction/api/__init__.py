"""The HTTP API (FastAPI). Routers stay thin: decode, call the store, answer."""
