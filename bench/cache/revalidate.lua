-- GET <url path>/<id> with If-None-Match: <that record's ETag>, cycling through the
-- "<id> <etag>" lines of a file; each wrk thread starts at its own offset.
-- Usage: wrk -H 'Authorization: ...' -s revalidate.lua http://host/api/v1/collections/Item -- <file>
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  ids, etags = {}, {}
  for line in io.lines(args[1]) do
    local id, etag = line:match("^(%d+) (.+)$")
    ids[#ids + 1], etags[#etags + 1] = id, etag
  end
  -- wrk.format sends only the headers it is given: start from the -H ones.
  headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  n = offset * 997
end

function request()
  n = n + 1
  local i = n % #ids + 1
  headers["If-None-Match"] = etags[i]
  return wrk.format("GET", wrk.path .. "/" .. ids[i], headers)
end
