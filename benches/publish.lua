-- wrk script for POST /api/publish: one JSON message per request, Basic auth as the
-- demo service account, keep-alive (wrk's default). Used by benches/compare.sh api.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic bWFya2V0LWZlZWQ6ZmVlZC1kZW1v" -- market-feed:feed-demo
wrk.body = '{"destination":"/topic/loadgen","body":"' .. string.rep("x", 128) .. '"}'

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("http-publish: %.0f requests/s, %d non-2xx, latency ms p50=%.3f p99=%.3f\n",
    summary.requests / (summary.duration / 1e6), non2xx,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
