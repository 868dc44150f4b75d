"""The HTTP API: REST under /api/v1, health probes, OpenAPI at /api/openapi.json."""
