"""Claiming and placing jobs on connected workers."""
