-- POST a GraphQL-sized JSON body (bench/asgi_servers/receive_app.py).
wrk.method = "POST"
wrk.body = '{"query": "query G($id: BigInt!) { item(id: $id) { id name rank state seen_at } }", "variables": {"id": 4242}}'
wrk.headers["Content-Type"] = "application/json"
