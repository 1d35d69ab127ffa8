"""The reporting layer: evaluation of trained methods, metrics, tables (with the paper's numbers and
significance marks) and figures."""
