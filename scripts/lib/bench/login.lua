-- POST /login of one user, again and again: args LOGIN PASSWORD. A fixed request (no
-- request() function): every answer is a new session.
dofile("scripts/lib/bench/report.lua")

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"login":"%s","password":"%s"}', args[1], args[2])
end
