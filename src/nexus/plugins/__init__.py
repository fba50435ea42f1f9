"""Built-in plugins, written only against the public plugin API."""
