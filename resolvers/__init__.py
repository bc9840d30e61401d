"""The shared core: tenant model, storage, permissions, collections; no HTTP, no GraphQL."""
