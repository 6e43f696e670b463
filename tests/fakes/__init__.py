"""Fake provider APIs, served for real on loopback, that tests send to."""
