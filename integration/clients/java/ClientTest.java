// MariaDB Connector/J (Debian's libmariadb-java) through rwsplit, checked
// against the same statements straight on the primary. Run as a
// single-file program:
//
//   integration/clients/test_java.sh
//
// Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450),
// RWSPLIT_PRIMARY_PORT (3306; the replicas are the next two ports). Each
// check prints PASS or FAIL; the exit status is 1 when any failed. Tables
// carry a per-run suffix and are dropped at the end.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class ClientTest {
    static final String HOST = env("RWSPLIT_HOST", "127.0.0.1");
    static final String PROXY = env("RWSPLIT_PORT", "6450");
    static final String PRIMARY = env("RWSPLIT_PRIMARY_PORT", "3306");
    static final String REPLICA1 = String.valueOf(Integer.parseInt(PRIMARY) + 1);
    static final String REPLICA2 = String.valueOf(Integer.parseInt(PRIMARY) + 2);
    static final String RUN = Long.toHexString(new Random().nextLong() & 0xffffffffL);

    static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    static Connection connect(String port, String params) throws SQLException {
        String url = "jdbc:mariadb://" + HOST + ":" + port + "/app?user=app&password=app&connectTimeout=5000&socketTimeout=30000";
        if (!params.isEmpty()) url += "&" + params;
        return DriverManager.getConnection(url);
    }

    static String t(String name) { return "java_" + name + "_" + RUN; }

    interface Check { void run() throws Exception; }

    static void require(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    /** Every row of a result, each column as getString (null as "NULL"). */
    static List<List<String>> rows(ResultSet rs) throws SQLException {
        List<List<String>> out = new ArrayList<>();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            List<String> row = new ArrayList<>();
            for (int i = 1; i <= n; i++) {
                String v = rs.getString(i);
                row.add(v == null ? "NULL" : v);
            }
            out.add(row);
        }
        return out;
    }

    static List<List<String>> query(Connection c, String sql, Object... args) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) ps.setObject(i + 1, args[i]);
            try (ResultSet rs = ps.executeQuery()) {
                return rows(rs);
            }
        }
    }

    static int errorCode(Check c) throws Exception {
        try {
            c.run();
        } catch (SQLException e) {
            return e.getErrorCode();
        }
        return 0;
    }

    public static void main(String[] argv) throws Exception {
        String types = t("types"), rw = t("rw"), tx = t("tx"), blob = t("blob"), proc = "java_p_" + RUN;
        Map<String, Check> checks = new LinkedHashMap<>();
        try (Connection proxy = connect(PROXY, ""); Connection direct = connect(PRIMARY, "")) {
            try (Statement s = proxy.createStatement()) {
                s.execute("CREATE TABLE " + types + " (id INT PRIMARY KEY, i BIGINT, d DECIMAL(20,6), f DOUBLE, "
                        + "s VARCHAR(100) CHARACTER SET utf8mb4, b VARBINARY(64), ts DATETIME(6), da DATE, ti TIME, "
                        + "bo BOOLEAN, n INT NULL)");
                s.execute("CREATE TABLE " + rw + " (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), UNIQUE KEY (v))");
                s.execute("CREATE TABLE " + tx + " (id INT PRIMARY KEY, v INT)");
                s.execute("CREATE TABLE " + blob + " (id INT PRIMARY KEY, b LONGBLOB)");
                s.execute("CREATE PROCEDURE " + proc + " (IN a INT, OUT b INT) BEGIN SET b = a * 2; SELECT a, b; END");
            }

            checks.put("metadata and a first query", () -> {
                DatabaseMetaData md = proxy.getMetaData();
                require(md.getDatabaseProductVersion().length() > 0, "no server version");
                try (ResultSet rs = md.getTables("app", null, types, null)) {
                    require(rs.next(), "getTables does not list " + types);
                }
                require(proxy.isValid(2), "isValid (COM_PING) failed");
            });

            Object[] values = {1, Long.MIN_VALUE, new BigDecimal("12345678901234.123456"), Math.PI,
                    "héllo wörld 🚀", new byte[] {0, 1, 2, (byte) 255, 0},
                    Timestamp.valueOf("2024-02-29 23:59:58.123456"), java.sql.Date.valueOf("1999-12-31"),
                    Time.valueOf("13:14:15"), true, null};
            String insert = "INSERT INTO " + types + " VALUES (?,?,?,?,?,?,?,?,?,?,?)";
            String select = "SELECT id, i, d, f, s, HEX(b), ts, da, ti, bo, n FROM " + types + " WHERE id = ?";
            checks.put("types round trip, client-side prepared statements", () -> {
                try (PreparedStatement ps = proxy.prepareStatement(insert)) {
                    for (int i = 0; i < values.length; i++) ps.setObject(i + 1, values[i]);
                    require(ps.executeUpdate() == 1, "insert count");
                }
                List<List<String>> want = query(direct, select, 1);
                require(!want.isEmpty(), "row not on the primary");
                require(query(proxy, select, 1).equals(want), "proxy " + query(proxy, select, 1) + " vs " + want);
            });
            checks.put("types round trip, server-side prepared statements (binary rows)", () -> {
                try (Connection c = connect(PROXY, "useServerPrepStmts=true");
                     Connection d = connect(PRIMARY, "useServerPrepStmts=true")) {
                    try (PreparedStatement ps = c.prepareStatement(insert)) {
                        for (int i = 0; i < values.length; i++) ps.setObject(i + 1, values[i]);
                        ps.setInt(1, 2);
                        require(ps.executeUpdate() == 1, "insert count");
                    }
                    for (int id : new int[] {1, 2}) {
                        List<List<String>> want = query(d, select, id);
                        for (int k = 0; k < 3; k++) {
                            List<List<String>> got = query(c, select, id);
                            require(got.equals(want), "row " + id + ": " + got + " vs " + want);
                        }
                    }
                }
            });
            checks.put("read-your-writes and generated keys on one connection", () -> {
                try (PreparedStatement ins = proxy.prepareStatement("INSERT INTO " + rw + " (v) VALUES (?)",
                        Statement.RETURN_GENERATED_KEYS)) {
                    for (int i = 0; i < 50; i++) {
                        ins.setString(1, "v" + i);
                        ins.executeUpdate();
                        long id;
                        try (ResultSet keys = ins.getGeneratedKeys()) {
                            require(keys.next(), "no generated key");
                            id = keys.getLong(1);
                        }
                        List<List<String>> got = query(proxy, "SELECT v FROM " + rw + " WHERE id = ?", id);
                        require(got.equals(List.of(List.of("v" + i))), "row " + id + " read back as " + got);
                    }
                }
            });
            checks.put("batch insert, plain and rewritten", () -> {
                for (String params : new String[] {"", "rewriteBatchedStatements=true", "useServerPrepStmts=true"}) {
                    try (Connection c = connect(PROXY, params);
                         PreparedStatement ps = c.prepareStatement("INSERT INTO " + rw + " (v) VALUES (?)")) {
                        for (int i = 0; i < 100; i++) {
                            ps.setString(1, "batch-" + params + "-" + i);
                            ps.addBatch();
                        }
                        int[] counts = ps.executeBatch();
                        require(counts.length == 100, params + ": " + counts.length + " counts");
                        List<List<String>> n = query(c, "SELECT COUNT(*) FROM " + rw + " WHERE v LIKE ?",
                                "batch-" + params + "-%");
                        require(n.equals(List.of(List.of("100"))), params + ": " + n + " rows");
                    }
                }
            });
            // With useBulkStmts, Connector/J sends a batch as one
            // COM_STMT_BULK_EXECUTE when the server offers bulk operations
            // (counts -2, and a duplicate part way fails the whole batch;
            // one execute per row otherwise: counts 1, the other rows in).
            // Through the proxy as straight from the primary.
            checks.put("bulk batches: counts, a duplicate part way, as from the primary", () -> {
                for (String params : new String[] {"", "useBulkStmts=true", "useBulkStmts=true&useServerPrepStmts=true", "useBulkStmts=false"}) {
                    List<String> seen = new ArrayList<>();
                    for (String port : new String[] {PRIMARY, PROXY}) {
                        String tag = "bulk-" + port + "-" + params + "-";
                        try (Connection c = connect(port, params);
                             PreparedStatement ps = c.prepareStatement("INSERT INTO " + rw + " (v) VALUES (?)")) {
                            for (int i = 0; i < 50; i++) {
                                ps.setString(1, tag + i);
                                ps.addBatch();
                            }
                            seen.add(Arrays.toString(ps.executeBatch()));
                            for (int i : new int[] {100, 101, 7, 102}) {
                                ps.setString(1, tag + i);
                                ps.addBatch();
                            }
                            try {
                                ps.executeBatch();
                                seen.add("no error");
                            } catch (BatchUpdateException e) {
                                seen.add(e.getErrorCode() + " " + Arrays.toString(e.getUpdateCounts()));
                            }
                            seen.add(query(c, "SELECT COUNT(*) FROM " + rw + " WHERE v LIKE ?", tag + "%").toString());
                        }
                    }
                    int half = seen.size() / 2;
                    require(seen.subList(0, half).equals(seen.subList(half, seen.size())),
                            params + ": primary " + seen.subList(0, half) + ", proxy " + seen.subList(half, seen.size()));
                }
            });
            checks.put("server errors keep their codes and the connection", () -> {
                Object[][] cases = {
                    {"SELEC 1", 1064}, {"SELECT * FROM java_missing_" + RUN, 1146},
                    {"INSERT INTO " + rw + " (v) VALUES ('v1')", 1062},
                };
                for (Object[] c : cases) {
                    String sql = (String) c[0];
                    int got = errorCode(() -> {
                        try (Statement s = proxy.createStatement()) {
                            s.execute(sql);
                        }
                    });
                    require(got == (Integer) c[1], sql + ": error " + got + ", want " + c[1]);
                    require(query(proxy, "SELECT 1").equals(List.of(List.of("1"))), "after " + sql);
                }
            });
            checks.put("transactions commit and roll back", () -> {
                try (Connection c = connect(PROXY, "")) {
                    c.setAutoCommit(false);
                    try (Statement s = c.createStatement()) {
                        s.executeUpdate("INSERT INTO " + tx + " VALUES (1, 10)");
                        require(query(c, "SELECT v FROM " + tx + " WHERE id = 1").equals(List.of(List.of("10"))),
                                "uncommitted row not seen inside the transaction");
                        c.rollback();
                        require(query(c, "SELECT COUNT(*) FROM " + tx).equals(List.of(List.of("0"))), "rolled back row seen");
                        s.executeUpdate("INSERT INTO " + tx + " VALUES (2, 20)");
                        c.commit();
                    }
                    c.setAutoCommit(true);
                    require(query(c, "SELECT v FROM " + tx + " WHERE id = 2").equals(List.of(List.of("20"))),
                            "committed row not read back");
                }
                require(query(direct, "SELECT v FROM " + tx + " WHERE id = 2").equals(List.of(List.of("20"))),
                        "committed row not on the primary");
            });
            checks.put("setReadOnly(true) connection reads", () -> {
                try (Connection c = connect(PROXY, "")) {
                    c.setReadOnly(true);
                    require(query(c, "SELECT v FROM " + tx + " WHERE id = 2").equals(List.of(List.of("20"))), "read");
                    c.setReadOnly(false);
                }
            });
            checks.put("allowMultiQueries: several results", () -> {
                try (Connection c = connect(PROXY, "allowMultiQueries=true"); Statement s = c.createStatement()) {
                    require(s.execute("SELECT 1; SELECT 'two', 2; UPDATE " + tx + " SET v = v WHERE id = 2; SELECT 3"),
                            "first result is not rows");
                    List<String> seen = new ArrayList<>();
                    while (true) {
                        ResultSet rs = s.getResultSet();
                        if (rs != null) {
                            seen.add(rows(rs).toString());
                        } else if (s.getUpdateCount() != -1) {
                            seen.add("update " + s.getUpdateCount());
                        } else {
                            break;
                        }
                        s.getMoreResults();
                    }
                    // Connector/J asks for found rows: the UPDATE counts the row it matched.
                    List<String> want = List.of("[[1]]", "[[two, 2]]", "update 1", "[[3]]");
                    require(seen.equals(want), seen + " vs " + want);
                }
            });
            checks.put("large blob, 5 MiB each way", () -> {
                byte[] big = new byte[5 << 20];
                for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 31);
                try (PreparedStatement ps = proxy.prepareStatement("INSERT INTO " + blob + " VALUES (1, ?)")) {
                    ps.setBytes(1, big);
                    ps.executeUpdate();
                }
                try (PreparedStatement ps = proxy.prepareStatement("SELECT b FROM " + blob + " WHERE id = 1");
                     ResultSet rs = ps.executeQuery()) {
                    require(rs.next() && Arrays.equals(rs.getBytes(1), big), "blob differs");
                }
            });
            checks.put("streamed result, closed before the end", () -> {
                try (Connection c = connect(PROXY, "")) {
                    try (Statement s = c.createStatement()) {
                        s.setFetchSize(100);
                        try (ResultSet rs = s.executeQuery("SELECT seq, REPEAT('x', 100) FROM seq_1_to_200000")) {
                            for (int i = 1; i <= 1000; i++) {
                                require(rs.next() && rs.getInt(1) == i, "row " + i);
                            }
                        }
                    }
                    require(query(c, "SELECT 41 + 1").equals(List.of(List.of("42"))), "connection after the stream");
                }
            });
            checks.put("setQueryTimeout kills the statement (KILL QUERY by the greeting's id)", () -> {
                try (Connection c = connect(PROXY, ""); Statement s = c.createStatement()) {
                    s.setQueryTimeout(1);
                    long start = System.nanoTime();
                    try {
                        s.executeQuery("SELECT SLEEP(5)").close();
                        // MariaDB's SLEEP returns 1 when killed; the driver may
                        // also raise. Either way it must end early.
                    } catch (SQLException e) {
                        // expected: timeout
                    }
                    long ms = (System.nanoTime() - start) / 1_000_000;
                    require(ms < 4000, "SLEEP(5) with a 1 s timeout took " + ms + " ms");
                    require(query(c, "SELECT 1").equals(List.of(List.of("1"))), "connection after the timeout");
                }
                // Killed on the server that ran it, not only abandoned (well
                // before the 5 s it would take).
                for (String port : new String[] {PRIMARY, REPLICA1, REPLICA2}) {
                    try (Connection d = connect(port, "")) {
                        String running = "SELECT COUNT(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(5)'";
                        long deadline = System.nanoTime() + 2_000_000_000L;
                        while (!query(d, running).equals(List.of(List.of("0")))) {
                            require(System.nanoTime() < deadline, "SLEEP(5) still running on :" + port);
                            Thread.sleep(50);
                        }
                    }
                }
            });
            checks.put("stored procedure with an OUT parameter", () -> {
                try (Connection c = connect(PROXY, "");
                     CallableStatement cs = c.prepareCall("{call " + proc + "(?, ?)}")) {
                    cs.setInt(1, 21);
                    cs.registerOutParameter(2, Types.INTEGER);
                    require(cs.execute(), "no result set from the procedure");
                    try (ResultSet rs = cs.getResultSet()) {
                        require(rows(rs).equals(List.of(List.of("21", "42"))), "procedure's rows");
                    }
                    require(cs.getInt(2) == 42, "OUT parameter " + cs.getInt(2));
                }
            });
            checks.put("setCatalog and session variables", () -> {
                try (Connection c = connect(PROXY, "sessionVariables=sql_mode='ANSI_QUOTES'")) {
                    c.setCatalog("information_schema");
                    for (int i = 0; i < 6; i++) {
                        require(query(c, "SELECT DATABASE(), @@sql_mode").equals(List.of(List.of("information_schema", "ANSI_QUOTES"))),
                                "read " + i + ": " + query(c, "SELECT DATABASE(), @@sql_mode"));
                    }
                    c.setCatalog("app");
                    require(query(c, "SELECT COUNT(*) FROM " + tx).equals(List.of(List.of("1"))), "table after setCatalog");
                }
            });
            checks.put("16 connections at once, prepared point reads", () -> {
                ExecutorService pool = Executors.newFixedThreadPool(16);
                List<Future<?>> done = new ArrayList<>();
                for (int g = 0; g < 16; g++) {
                    final int g0 = g;
                    done.add(pool.submit(() -> {
                        try (Connection c = connect(PROXY, g0 % 2 == 0 ? "useServerPrepStmts=true" : "");
                             PreparedStatement ps = c.prepareStatement("SELECT ? * ?, CONCAT('g', ?)")) {
                            for (int k = 0; k < 200; k++) {
                                ps.setInt(1, k);
                                ps.setInt(2, g0);
                                ps.setInt(3, g0);
                                try (ResultSet rs = ps.executeQuery()) {
                                    require(rs.next() && rs.getLong(1) == (long) k * g0 && rs.getString(2).equals("g" + g0),
                                            "thread " + g0 + " read " + k);
                                }
                            }
                        }
                        return null;
                    }));
                }
                pool.shutdown();
                for (Future<?> f : done) f.get(60, TimeUnit.SECONDS);
            });
            checks.put("wrong password is refused with error 1045", () -> {
                int code = errorCode(() -> DriverManager.getConnection(
                        "jdbc:mariadb://" + HOST + ":" + PROXY + "/app?user=app&password=wrong&connectTimeout=5000").close());
                require(code == 1045, "error " + code);
            });

            int failed = 0;
            for (Map.Entry<String, Check> e : checks.entrySet()) {
                try {
                    e.getValue().run();
                    System.out.println("PASS " + e.getKey());
                } catch (Throwable ex) {
                    failed++;
                    System.out.println("FAIL " + e.getKey() + ": " + ex);
                }
            }
            System.out.println((checks.size() - failed) + " of " + checks.size() + " checks passed");
            try (Statement s = direct.createStatement()) {
                for (String table : new String[] {types, rw, tx, blob}) s.execute("DROP TABLE IF EXISTS " + table);
                s.execute("DROP PROCEDURE IF EXISTS " + proc);
            }
            System.exit(failed == 0 ? 0 : 1);
        }
    }
}
