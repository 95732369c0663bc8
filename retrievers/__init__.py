"""Retrievers: dense dual encoders now, late interaction later."""
