"""The base layer: configuration, registries, errors, names, locks, atomic writes and run records.
Imports nothing else of sslbench."""
