"""Test support: reference implementations, input makers and fixtures shared by tests and benchmarks."""
