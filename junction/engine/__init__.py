"""The worker side: claims due work, runs the core, applies effects, dispatches sends."""
