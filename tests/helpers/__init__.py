"""Shared test helpers: the dense float64 reference, seeded data, the client tests' texts."""
