-- Replay the requests of a file in a cycle; each wrk thread starts at its own offset.
-- One request per line: METHOD<TAB>PATH<TAB>BODY<TAB>Name: value<TAB>... (BODY empty:
-- none); the -H headers are sent with every request. Written by harness.write_requests.
-- Usage: wrk -H 'Authorization: ...' -s requests.lua http://host:port -- <request file>
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local function fields(line)
  local out, start = {}, 1
  while true do
    local tab = string.find(line, "\t", start, true)
    if not tab then
      out[#out + 1] = string.sub(line, start)
      return out
    end
    out[#out + 1] = string.sub(line, start, tab - 1)
    start = tab + 1
  end
end

function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      local f = fields(line)
      -- wrk.format sends only the headers it is given: start from the -H ones.
      local headers = {}
      for name, value in pairs(wrk.headers) do
        headers[name] = value
      end
      for i = 4, #f do
        local name, value = string.match(f[i], "^([^:]+): (.*)$")
        headers[name] = value
      end
      local body = nil
      if f[3] ~= "" then
        body = f[3]
      end
      reqs[#reqs + 1] = wrk.format(f[1], f[2], headers, body)
    end
  end
  n = offset * 997
end

function request()
  n = n + 1
  return reqs[n % #reqs + 1]
end
