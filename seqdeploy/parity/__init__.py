"""Parity checking: compare backends against a reference, tensor by tensor, mode by mode."""
