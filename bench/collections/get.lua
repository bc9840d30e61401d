-- GET <url path>/<id> for ids first..last, cycling; each wrk thread starts at its own offset.
-- Usage: wrk -s get.lua http://host/api/v1/collections/Item -- <first> <last>
local threads = 0

function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

function init(args)
  first, count, n = tonumber(args[1]), tonumber(args[2]) - tonumber(args[1]) + 1, offset * 997
end

function request()
  n = n + 1
  return wrk.format("GET", wrk.path .. "/" .. (first + n % count))
end
