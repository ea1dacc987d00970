# Ruby's mysql2 gem (Debian's ruby-mysql2, on the MariaDB C connector)
# through rwsplit, checked against the same statements straight on the
# primary: text queries, the C API's server-side prepared statements,
# multi-statements, streaming, errors and transactions.
#
#   RWSPLIT_PORT=6450 ruby integration/clients/test_ruby.rb
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Each check prints PASS or FAIL; the exit
# status is 1 when any failed. Tables carry a per-run suffix and are
# dropped at the end.

require 'bigdecimal'
require 'mysql2'
require 'securerandom'

HOST = ENV.fetch('RWSPLIT_HOST', '127.0.0.1')
PROXY_PORT = Integer(ENV.fetch('RWSPLIT_PORT', '6450'))
PRIMARY_PORT = Integer(ENV.fetch('RWSPLIT_PRIMARY_PORT', '3306'))
RUN = SecureRandom.hex(4)

def connect(port, **opts)
  Mysql2::Client.new(host: HOST, port: port, username: 'app', password: 'app', database: 'app',
                     encoding: 'utf8mb4', connect_timeout: 5, read_timeout: 30, **opts)
end

def table(name) = "rb_#{name}_#{RUN}"

class CheckFailed < StandardError; end

def check(ok, what)
  raise CheckFailed, what unless ok
end

# Every row as an array, from a text query or a prepared statement.
def rows(result) = result.to_a.map { |r| r.is_a?(Hash) ? r.values : r }

def error_number
  yield
  0
rescue Mysql2::Error => e
  e.error_number
end

proxy = connect(PROXY_PORT)
direct = connect(PRIMARY_PORT)
types = table('types')
rw = table('rw')
tx = table('tx')
[
  "CREATE TABLE #{types} (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, f DOUBLE, d DECIMAL(20,6), " \
  "s VARCHAR(100) CHARACTER SET utf8mb4, b VARBINARY(64), dt DATETIME(6), da DATE, ti TIME, n INT NULL)",
  "CREATE TABLE #{rw} (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), UNIQUE KEY (v))",
  "CREATE TABLE #{tx} (id INT PRIMARY KEY, v INT)"
].each { |sql| proxy.query(sql) }

checks = {}

checks['types round trip, text and prepared'] = lambda do
  values = [1, -9_223_372_036_854_775_808, 18_446_744_073_709_551_615, Math::PI, BigDecimal('12345678901234.123456'),
            'héllo wörld 🚀', "\x00\x01\xFF\x00".b, Time.utc(2024, 2, 29, 23, 59, 58, 123_456), Date.new(1999, 12, 31),
            '13:14:15', nil]
  proxy.prepare("INSERT INTO #{types} VALUES (?,?,?,?,?,?,?,?,?,?,?)").execute(*values)
  sql = "SELECT id, i, u, f, d, s, b, dt, da, ti, n FROM #{types} WHERE id = "
  want = rows(direct.query("#{sql}1"))
  check(want.size == 1, 'row not on the primary')
  got = rows(proxy.query("#{sql}1"))
  check(got == want, "text: #{got.inspect} vs #{want.inspect}")
  want_p = rows(direct.prepare("#{sql}?").execute(1))
  3.times do
    got_p = rows(proxy.prepare("#{sql}?").execute(1))
    check(got_p == want_p, "prepared: #{got_p.inspect} vs #{want_p.inspect}")
  end
end

checks['read-your-writes, last_id and affected_rows'] = lambda do
  ins = proxy.prepare("INSERT INTO #{rw} (v) VALUES (?)")
  sel = proxy.prepare("SELECT v FROM #{rw} WHERE id = ?")
  50.times do |i|
    ins.execute("v#{i}")
    id = proxy.last_id
    check(id.positive? && proxy.affected_rows == 1, "last_id #{id}, affected_rows #{proxy.affected_rows}")
    got = rows(sel.execute(id))
    check(got == [["v#{i}"]], "row #{id} read back as #{got.inspect}")
  end
  ins.close
  sel.close
end

checks['server errors keep their numbers and the connection'] = lambda do
  [['SELEC 1', 1064], ["SELECT * FROM rb_missing_#{RUN}", 1146], ["INSERT INTO #{rw} (v) VALUES ('v1')", 1062]].each do |sql, want|
    got = error_number { proxy.query(sql) }
    check(got == want, "#{sql}: error #{got}, want #{want}")
    check(rows(proxy.query('SELECT 1')) == [[1]], "connection after #{sql}")
  end
  got = error_number { proxy.prepare("SELECT * FROM rb_missing_#{RUN} WHERE id = ?") }
  check(got == 1146, "prepare of a missing table: error #{got}")
end

checks['transactions commit and roll back'] = lambda do
  c = connect(PROXY_PORT)
  c.query('BEGIN')
  c.query("INSERT INTO #{tx} VALUES (1, 10)")
  check(rows(c.query("SELECT v FROM #{tx} WHERE id = 1")) == [[10]], 'uncommitted row not seen inside')
  c.query('ROLLBACK')
  check(rows(c.query("SELECT COUNT(*) FROM #{tx}")) == [[0]], 'rolled back row seen')
  c.query('START TRANSACTION')
  c.prepare("INSERT INTO #{tx} VALUES (?, ?)").execute(2, 20)
  c.query('COMMIT')
  check(rows(c.query("SELECT v FROM #{tx} WHERE id = 2")) == [[20]], 'committed row not read back')
  check(rows(direct.query("SELECT v FROM #{tx} WHERE id = 2")) == [[20]], 'committed row not on the primary')
  c.close
end

checks['multi-statements: every result, and an error midway'] = lambda do
  c = connect(PROXY_PORT, flags: Mysql2::Client::MULTI_STATEMENTS)
  first = c.query("SELECT 1 AS a; UPDATE #{tx} SET v = v + 0 WHERE id = 2; SELECT 'two' AS b, 2 AS c")
  seen = [rows(first)]
  while c.next_result
    r = c.store_result
    seen << (r ? rows(r) : "affected #{c.affected_rows}")
  end
  check(seen == [[[1]], 'affected 0', [['two', 2]]], seen.inspect)
  got = error_number do
    c.query("INSERT INTO #{tx} VALUES (5, 50); INSERT INTO #{tx} VALUES (5, 51); INSERT INTO #{tx} VALUES (6, 60)")
    c.store_result while c.next_result
  end
  check(got == 1062, "batch with a duplicate: error #{got}")
  check(rows(c.query("SELECT COUNT(*) FROM #{tx} WHERE id IN (5, 6)")) == [[1]], 'rows after the failed batch')
  c.close
end

checks['streamed rows, then the next query'] = lambda do
  c = connect(PROXY_PORT)
  n = 0
  c.query('SELECT seq, REPEAT(\'x\', 100) FROM seq_1_to_100000', stream: true, cache_rows: false).each do |row|
    n += 1
    check(row['seq'] == n, "row #{n}: #{row['seq']}")
  end
  check(n == 100_000, "#{n} rows streamed")
  check(rows(c.query('SELECT 41 + 1')) == [[42]], 'query after the stream')
  c.close
end

checks['abandon_results! on a multi-statement, then a query'] = lambda do
  c = connect(PROXY_PORT, flags: Mysql2::Client::MULTI_STATEMENTS)
  c.query('SELECT 1; SELECT 2; SELECT 3')
  c.abandon_results!
  check(rows(c.query('SELECT 4')) == [[4]], 'query after abandoning results')
  c.close
end

checks['ping, select_db, session variables'] = lambda do
  c = connect(PROXY_PORT)
  check(c.ping, 'ping')
  c.query("SET @rb_marker = 'm#{RUN}', SESSION sql_mode = 'ANSI_QUOTES'")
  c.select_db('information_schema')
  6.times do |i|
    got = rows(c.query('SELECT DATABASE(), @rb_marker, @@sql_mode'))
    check(got == [['information_schema', "m#{RUN}", 'ANSI_QUOTES']], "read #{i}: #{got.inspect}")
  end
  c.select_db('app')
  check(rows(c.query("SELECT COUNT(*) FROM #{tx} WHERE id = 2")) == [[1]], 'table after select_db')
  c.close
end

checks['escape and a 4 MiB value'] = lambda do
  big = ("ab'\\\"\x00" * 700_000).b
  proxy.query("INSERT INTO #{rw} (v) VALUES ('big#{RUN}')")
  id = proxy.last_id
  got = rows(proxy.query("SELECT LENGTH('#{proxy.escape(big)}'), MD5('#{proxy.escape(big)}') = MD5(UNHEX('#{big.unpack1('H*')}'))"))
  check(got == [[big.bytesize, 1]], "length and digest: #{got.inspect}")
  check(rows(proxy.query("SELECT v FROM #{rw} WHERE id = #{id}")) == [["big#{RUN}"]], 'row after the big statement')
end

checks['wrong password is refused with error 1045'] = lambda do
  got = error_number { Mysql2::Client.new(host: HOST, port: PROXY_PORT, username: 'app', password: 'wrong', connect_timeout: 5) }
  check(got == 1045, "error #{got}")
end

failed = 0
checks.each do |name, run|
  run.call
  puts "PASS #{name}"
rescue StandardError => e
  failed += 1
  puts "FAIL #{name}: #{e.class}: #{e.message}"
end
puts "#{checks.size - failed} of #{checks.size} checks passed"
[types, rw, tx].each { |t| direct.query("DROP TABLE IF EXISTS #{t}") }
exit(failed.zero? ? 0 : 1)
