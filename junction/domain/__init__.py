"""The pure core: decisions as functions over plain values.

Nothing in this package may import a database driver, an HTTP library, a framework or a
clock; ``tests/test_architecture.py`` holds it to that.
"""
