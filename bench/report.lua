-- wrk reporter for the bench scripts: prints one machine-readable line at the end,
-- so the scripts do not scrape wrk's human output (whose units change with scale).
--   WRKRESULT <rps> <p50_ms> <p99_ms> <requests> <socket_errors> <non2xx>
-- socket_errors sums connect, read, write and timeout errors; non2xx counts answers
-- whose status was not 2xx/3xx (a proxy answering 404 fast must not look fast).
done = function(summary, latency, requests)
   local e = summary.errors
   local socket_errors = e.connect + e.read + e.write + e.timeout
   io.write(string.format("WRKRESULT %.1f %.3f %.3f %d %d %d\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000,
      latency:percentile(99) / 1000,
      summary.requests, socket_errors, e.status))
end
