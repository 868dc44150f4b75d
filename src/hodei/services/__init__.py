"""Application services: one place for each use case, shared by gRPC and HTTP."""

# Who acts when a request carries no identity (there is no authentication yet).
ANONYMOUS_ACTOR = "anonymous"
