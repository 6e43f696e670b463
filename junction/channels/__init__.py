"""Channel adapters: one module per provider, each behind the protocol in ``base``.

Core code never imports a provider module; it asks the registry for an adapter by name.
"""
