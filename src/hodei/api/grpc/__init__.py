"""The gRPC API (package hodei.v1)."""
