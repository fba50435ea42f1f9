"""The FastAPI adapter: middleware, problem responses and (later) the app factory."""
