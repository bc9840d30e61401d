"""The strawberry GraphQL schema, generated from the tenant model (the GraphQL issue)."""
