"""Signal processing for RVC on arrays: pitch estimation and feature retrieval."""
