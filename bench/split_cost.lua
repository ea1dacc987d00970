-- sysbench script for bench/split_cost.sh: the statements of
-- oltp_read_only --skip_trx=on (10 point selects from one table, then the
-- four range queries), each thread holding one connection to each of two
-- servers (give sysbench --mysql-port=R1,R2). SPLIT_MODE chooses where each
-- statement runs:
--   stick    every statement of a thread on one server (threads split
--            evenly), as behind a balancer of connections
--   alt      statement by statement, alternating, as behind a balancer of
--            statements
--   blockN   N statements on one server, then N on the other
--   samealt  two connections to the thread's one server, alternating
--            statement by statement (as alt, without changing servers)
require("oltp_common")

function prepare_statements()
   prepare_point_selects()
   prepare_simple_ranges()
   prepare_sum_ranges()
   prepare_order_ranges()
   prepare_distinct_ranges()
end

local sides = {}
local mode, home, turn, run = "alt", 1, 1, 0

function thread_init()
   drv = sysbench.sql.driver()
   local first = drv:connect()
   local first_port = first:query_row("SELECT @@port")
   local second
   -- sysbench hands out the ports in turn across all threads: connect
   -- again until this thread holds one connection to each server (for
   -- samealt: a second connection to the same server).
   local want_same = os.getenv("SPLIT_MODE") == "samealt"
   for _ = 1, 20 do
      second = drv:connect()
      if (second:query_row("SELECT @@port") ~= first_port) ~= want_same then
         break
      end
      second:disconnect()
      second = nil
   end
   if second == nil then
      error("could not reach a second server: give --mysql-port=R1,R2")
   end
   for k, c in ipairs({first, second}) do
      con = c
      stmt, param = {}, {}
      for t = 1, sysbench.opt.tables do
         stmt[t], param[t] = {}, {}
      end
      prepare_statements()
      -- (holding the connection keeps it from being collected)
      sides[k] = { con = c, stmt = stmt, param = param }
   end
   mode = os.getenv("SPLIT_MODE") or "alt"
   home = sysbench.tid % 2 + 1
   turn = home
end

local function side()
   if mode == "samealt" then
      turn = 3 - turn
      return sides[turn]
   end
   if mode == "stick" then
      return sides[home]
   end
   local block = tonumber(string.match(mode, "^block(%d+)$")) or 1
   run = run + 1
   if run > block then
      run = 1
      turn = 3 - turn
   end
   return sides[turn]
end

local function id()
   return sysbench.rand.default(1, sysbench.opt.table_size)
end

function event()
   local t = sysbench.rand.uniform(1, sysbench.opt.tables)
   for _ = 1, sysbench.opt.point_selects do
      local s = side()
      s.param[t].point_selects[1]:set(id())
      s.stmt[t].point_selects:execute()
   end
   for _, key in ipairs({"simple_ranges", "sum_ranges", "order_ranges", "distinct_ranges"}) do
      local s = side()
      local tn = sysbench.rand.uniform(1, sysbench.opt.tables)
      local from = id()
      s.param[tn][key][1]:set(from)
      s.param[tn][key][2]:set(from + sysbench.opt.range_size - 1)
      s.stmt[tn][key]:execute()
   end
end

function thread_done()
end
