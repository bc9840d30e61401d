"""The strawberry GraphQL schema, generated from the tenant model; thin: every field is a
call into `resolvers`, with the same request values REST builds.

- `build`: `build_schema(tenant)`, and `MUTATION_SOURCES`, the hook for more mutations;
- `types`: per type its object, `Where`, `Order`, `Input` and `Patch` types, and the
  translation of GraphQL input into what the resolvers take;
- `collections`: list, get and get-by-property queries, create/update/replace/delete;
- `accounts`: API keys and account challenges;
- `scalars`: `BigInt`, `Decimal`, `DateTime`, `Date`, `Month`, `File` and the filters;
- `context`: the per-request context and its reference DataLoaders;
- `execution`: plain record fields completed in place (graphql-core's per-field cost);
- `errors`: the gateway's errors as GraphQL errors (`extensions.code`), masking;
- `limits`: depth, aliases and tokens bounded before execution; introspection per user;
- `http`: `/graphql` on Litestar (authentication, cache headers, GraphiQL).
"""
