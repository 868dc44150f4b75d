"""Hodei Jobs: a distributed job execution platform."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Servers and workers start child processes that exec at once; gRPC's fork handlers are not
# needed for that and only warn. Must be set before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
