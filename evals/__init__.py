"""Transcript replay evals (issue 5). Nothing is exported yet."""
