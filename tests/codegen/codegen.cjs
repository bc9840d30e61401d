// GraphQL Code Generator pointed at a live gateway: it introspects /graphql with an API key
// and writes TypeScript types. tests/integration/test_graphql_codegen.py sets the variables.
const url = process.env.JGW_GRAPHQL_URL;
const key = process.env.JGW_API_KEY;
if (!url || !key) {
  throw new Error("set JGW_GRAPHQL_URL (e.g. http://127.0.0.1:8000/graphql) and JGW_API_KEY");
}

module.exports = {
  overwrite: true,
  silent: true,
  schema: [{ [url]: { headers: { Authorization: `Bearer ${key}` } } }],
  generates: {
    [process.env.JGW_CODEGEN_OUTPUT || "generated/graphql.ts"]: { plugins: ["typescript"] },
  },
};
