"""Providers start and stop workers on demand (DESIGN.md section 6)."""
