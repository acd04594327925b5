"""Conversation runtime: inbound events in order, routing to SOP steps, and the composed runtime."""
