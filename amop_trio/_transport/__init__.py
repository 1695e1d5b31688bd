"""Turns a WebSocket or a 2.x channel byte stream into whole frames and back."""
