"""The figures of benches/harness.py, one module each, and what they share (common)."""
