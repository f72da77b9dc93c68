-- wrk script for callgrind.sh's BODY=chunked: every request a POST whose body is chunked
-- the way a lax client may send it (a zero-padded size, an extension), so the proxy rewrites
-- it into canonical form on the way. Written whole: wrk.format would add a Content-Length.
local req
request = function()
   if not req then
      req = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. (wrk.headers["Host"] or "localhost")
         .. "\r\nTransfer-Encoding: chunked\r\n\r\n0014;name=value\r\n"
         .. string.rep("x", 20) .. "\r\n0\r\n\r\n"
   end
   return req
end
