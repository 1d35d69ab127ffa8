"""The run layer: sweeps expanded into run specs, each run trained, evaluated and recorded."""
