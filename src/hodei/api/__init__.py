"""The public doors: gRPC and HTTP. Both call the same services."""
