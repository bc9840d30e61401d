-- POST <url> with the body of a file as application/json (a GraphQL operation), every request.
-- Usage: wrk -H 'Authorization: ...' -s post.lua http://host/graphql -- <body file>
function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  -- wrk.format sends only the headers it is given: start from the -H ones.
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["Content-Type"] = "application/json"
  req = wrk.format("POST", nil, headers, body)
end

function request()
  return req
end
