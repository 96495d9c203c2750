"""Serving code for the ``piper`` Triton model: its voice catalogue, free of Triton."""
