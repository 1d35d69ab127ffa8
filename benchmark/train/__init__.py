"""The training layer: the one trainer, its slice sampler, peak-memory probes and the conformance kit."""
