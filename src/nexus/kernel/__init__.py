"""The Nexus kernel: plugins, lifecycle, events, services and configuration (no HTTP)."""
