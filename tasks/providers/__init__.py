"""Channel providers: one module per provider over a shared base, chosen by name in the registry."""
