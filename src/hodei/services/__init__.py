"""Application services: one place for each use case, shared by gRPC and HTTP."""
