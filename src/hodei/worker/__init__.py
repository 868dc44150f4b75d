"""The worker agent: dials the server, runs jobs through a runtime, streams their output."""
