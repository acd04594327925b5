"""Data access shared by every layer: settings, clock, database and business tables.

Imports no LangGraph and no FastAPI, so every other package may depend on it.
"""
