-- One request per call, picked at random from a file of paths, with a bearer token.
-- wrk -s requests.lua URL -- <paths file> <token> [METHOD] [body file] [seed]
local paths = {}
local method = "GET"
local headers = {}
local body = nil

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  headers["Authorization"] = "Bearer " .. args[2]
  method = args[3] or "GET"
  if args[4] and args[4] ~= "" then
    local file = io.open(args[4], "rb")
    body = file:read("*a")
    file:close()
    headers["Content-Type"] = "application/json"
  end
  math.randomseed(tonumber(args[5] or "1") + os.time() % 1000 + #tostring({}))
end

function request()
  return wrk.format(method, paths[math.random(#paths)], headers, body)
end

-- One JSON line the bench parses: wrk's own summary gives no percentiles beyond --latency's.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
