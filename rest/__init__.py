"""Litestar transport: thin controllers that parse, call `resolvers`, and render."""
