"""Turns a WebSocket (or, later, a byte stream) into whole frames and back."""
