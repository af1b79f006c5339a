-- One request shape for wrk, set by bench/run through the environment:
--   BENCH_METHOD, BENCH_PATH, BENCH_BODY (form body; each "{n}" becomes a value unique to
--   this request; "{t}" this wrk thread's number, 1, 2, ...; "{k}" counts 0 .. BENCH_CYCLE-1
--   round and round, so the same value is never in flight twice while BENCH_CYCLE exceeds the
--   thread's connections), BENCH_COOKIE, BENCH_EXPECT (the statuses that count as answered).
-- done() prints one line `BENCH ok=… total=… p50_us=… p99_us=… duration_us=… statuses=…`.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  ok, total, statuses, counter = 0, 0, {}, 0
  expect = {}
  for s in string.gmatch(os.getenv("BENCH_EXPECT") or "200", "%d+") do
    expect[tonumber(s)] = true
  end
  method = os.getenv("BENCH_METHOD") or "GET"
  path = os.getenv("BENCH_PATH") or "/"
  body = os.getenv("BENCH_BODY")
  if body == "" then body = nil end
  headers = {}
  local cookie = os.getenv("BENCH_COOKIE")
  if cookie and cookie ~= "" then headers["Cookie"] = cookie end
  if body then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  cycle = tonumber(os.getenv("BENCH_CYCLE") or "1")
  if not (body and body:find("{", 1, true)) then
    fixed = wrk.format(method, path, headers, body)
  end
end

function request()
  if fixed then return fixed end
  counter = counter + 1
  local b = body:gsub("{n}", tid .. "x" .. counter .. "x" .. math.random(1000000000))
  b = b:gsub("{t}", tostring(tid)):gsub("{k}", tostring(counter % cycle))
  return wrk.format(method, path, headers, b)
end

function response(status, headers, body)
  total = total + 1
  if expect[status] then ok = ok + 1 end
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local ok_sum, total_sum, by_status = 0, 0, {}
  for _, thread in ipairs(threads) do
    ok_sum = ok_sum + thread:get("ok")
    total_sum = total_sum + thread:get("total")
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(by_status) do table.insert(parts, status .. ":" .. n) end
  table.sort(parts)
  io.write(string.format("BENCH ok=%d total=%d p50_us=%d p99_us=%d duration_us=%d statuses=%s\n",
    ok_sum, total_sum, latency:percentile(50), latency:percentile(99), summary.duration,
    table.concat(parts, ",")))
end
