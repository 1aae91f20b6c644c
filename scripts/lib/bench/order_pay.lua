-- The pay flow: POST /order {"amount": AMOUNT}, then PUT /order/{id}/pay with the id from
-- the answer, in a loop, with the session cookies of the users in USERS_FILE (lines
-- "USER_ID COOKIE"). args: USERS_FILE AMOUNT THREADS
--
-- wrk runs one Lua state per thread, shared by that thread's connections, and request()
-- does not say which connection asks. So a created order goes into the thread's queue and
-- the next connection that is free pays it (with its owner's cookie, found by the answer's
-- user_id); a connection that finds the queue empty creates the next order. Each connection
-- thus alternates create and pay, every created order is paid once, and what is left in the
-- queues when wrk stops stays Pending. Each thread cycles through its own slice of the
-- users (all of them when there are fewer users than threads).
dofile("scripts/lib/bench/report.lua")
counter_names = {"created", "paid", "declined", "non2xx", "unparsed"}
created, paid, declined, non2xx, unparsed = 0, 0, 0, 0, 0

local owners = {}      -- user id (string) -> cookie
local slice = {}       -- the cookies this thread creates orders for
local next_user = 1
local queue, head, tail = {}, 1, 0
local order_body = nil

function init(args)
  local threads = tonumber(args[3])
  local lines = {}
  for line in io.lines(args[1]) do
    local uid, cookie = line:match("^(%d+) (.+)$")
    if uid then
      owners[uid] = cookie
      table.insert(lines, cookie)
    end
  end
  for i, cookie in ipairs(lines) do
    if #lines < threads or (i - 1) % threads == tid - 1 then
      table.insert(slice, cookie)
    end
  end
  order_body = string.format('{"amount":%s,"description":"bench"}', args[2])
end

function request()
  if head <= tail then
    local item = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("PUT", "/order/" .. item[1] .. "/pay", {["Cookie"] = item[2]})
  end
  local cookie = slice[next_user]
  next_user = next_user % #slice + 1
  return wrk.format("POST", "/order",
    {["Cookie"] = cookie, ["Content-Type"] = "application/json"}, order_body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    return
  end
  if body:find('"billing"', 1, true) then
    -- a pay's answer: {"id":..,"status":"Processing"|"Failed",..,"billing":{..},..}
    if body:find('"status":"Processing"', 1, true) then
      paid = paid + 1
    else
      declined = declined + 1
    end
    return
  end
  local id = body:match('"id":(%d+)')
  local uid = body:match('"user_id":(%d+)')
  if id and uid and owners[uid] then
    created = created + 1
    tail = tail + 1
    queue[tail] = {id, owners[uid]}
  else
    unparsed = unparsed + 1
  end
end
