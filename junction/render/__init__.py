"""Rendering: turning a message's content into what a channel carries on the wire.

Pure functions only (no I/O), so rendering is tested without servers and can run anywhere.
"""
