// Two more Node.js drivers through rwsplit, each checked against the same
// statements straight on the primary:
// - mysql (mysqljs): text protocol only, client-side escaping, streaming
//   with pause/resume, COM_CHANGE_USER;
// - mariadb (MariaDB's connector): pipelined commands (it sends the next
//   command before the reply to the previous one), server-side prepared
//   statements through execute(), batch(), COM_RESET_CONNECTION.
//
//   RWSPLIT_PORT=6450 node integration/clients/node/test_drivers.js
//
// Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
// RWSPLIT_PRIMARY_PORT (3306; the replicas are the next two ports). Each
// check prints PASS or FAIL; the exit status is 1 when any failed. Tables carry a per-run suffix and are
// dropped at the end.

'use strict';
const crypto = require('crypto');
const util = require('util');
const mysql = require('mysql');
const mariadb = require('mariadb');

const host = process.env.RWSPLIT_HOST || '127.0.0.1';
const proxyPort = Number(process.env.RWSPLIT_PORT || 6450);
const primaryPort = Number(process.env.RWSPLIT_PRIMARY_PORT || 3306);
const run = crypto.randomBytes(4).toString('hex');
const login = { host, user: 'app', password: 'app', database: 'app', connectTimeout: 5000 };

function check(ok, what) {
  if (!ok) throw new Error(what);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// mysqljs with promises: query(sql, values) resolves to [rows, fields].
function mysqlConn(port, extra = {}) {
  const c = mysql.createConnection({ ...login, port, supportBigNumbers: true, bigNumberStrings: true,
    dateStrings: true, charset: 'UTF8MB4_GENERAL_CI', ...extra });
  const q = util.promisify((sql, values, cb) => c.query(sql, values, (err, rows) => cb(err, rows)));
  return {
    raw: c,
    connect: util.promisify(c.connect.bind(c)),
    query: (sql, values = []) => q(sql, values),
    changeUser: util.promisify(c.changeUser.bind(c)),
    end: util.promisify(c.end.bind(c)),
  };
}

async function errno(promise) {
  try {
    await promise;
  } catch (e) {
    return e.errno;
  }
  return 0;
}

const types = `node_types_${run}`;
const rw = `node_rw_${run}`;

const checks = {
  'mysqljs: types round trip with client-side escaping': async () => {
    const p = mysqlConn(proxyPort);
    const d = mysqlConn(primaryPort);
    await p.connect();
    await d.connect();
    try {
      await p.query(`INSERT INTO ${types} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, [1, '-9223372036854775808',
        '12345678901234.123456', 3.141592653589793, 'héllo wörld 🚀', Buffer.from([0, 1, 255, 0, 39, 92]),
        '2024-02-29 23:59:58.123456', null, JSON.stringify({ k: [1, 'x'] })]);
      const sql = `SELECT * FROM ${types} WHERE id = ?`;
      const want = await d.query(sql, [1]);
      check(want.length === 1, 'row not on the primary');
      const got = await p.query(sql, [1]);
      check(same(got, want), `${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
    } finally {
      await p.end();
      await d.end();
    }
  },

  'mysqljs: multipleStatements and an error midway': async () => {
    const p = mysqlConn(proxyPort, { multipleStatements: true });
    await p.connect();
    try {
      const res = await p.query(`SELECT 1 AS a; UPDATE ${rw} SET v = v WHERE id = 0; SELECT 'two' AS b`);
      check(res.length === 3 && res[0][0].a === 1 && res[1].affectedRows === 0 && res[2][0].b === 'two',
        JSON.stringify(res));
      const e = await errno(p.query(`INSERT INTO ${rw} (v) VALUES ('m1'); INSERT INTO ${rw} (v) VALUES ('m1'); ` +
        `INSERT INTO ${rw} (v) VALUES ('m2')`));
      check(e === 1062, `batch with a duplicate: errno ${e}`);
      const [n] = await p.query(`SELECT COUNT(*) AS n FROM ${rw} WHERE v IN ('m1', 'm2')`);
      check(Number(n.n) === 1, `rows after the failed batch: ${n.n}`);
    } finally {
      await p.end();
    }
  },

  'mysqljs: streamed rows with pause and resume, then a query': async () => {
    const p = mysqlConn(proxyPort);
    await p.connect();
    try {
      let n = 0;
      await new Promise((resolve, reject) => {
        const q = p.raw.query("SELECT seq, REPEAT('x', 100) AS pad FROM seq_1_to_50000");
        q.on('error', reject);
        q.on('result', (row) => {
          n += 1;
          if (Number(row.seq) !== n) reject(new Error(`row ${n}: ${row.seq}`));
          if (n % 5000 === 0) {
            p.raw.pause();
            setTimeout(() => p.raw.resume(), 5);
          }
        });
        q.on('end', resolve);
      });
      check(n === 50000, `${n} rows`);
      const [r] = await p.query('SELECT 41 + 1 AS x');
      check(r.x === 42, 'query after the stream');
    } finally {
      await p.end();
    }
  },

  'mysqljs: changeUser (COM_CHANGE_USER) resets the session like the server': async () => {
    const results = [];
    for (const port of [proxyPort, primaryPort]) {
      const c = mysqlConn(port);
      await c.connect();
      try {
        await c.query("SET @node_marker = 'm', SESSION sql_mode = 'ANSI_QUOTES'");
        await c.changeUser({ user: 'app', password: 'app', database: 'information_schema' });
        const [a] = await c.query('SELECT DATABASE() AS db, @node_marker AS m, @@sql_mode = \'ANSI_QUOTES\' AS q');
        await c.changeUser({ user: 'app', password: 'app', database: 'app' });
        const [b] = await c.query(`SELECT DATABASE() AS db, COUNT(*) AS n FROM ${rw}`);
        results.push([a, b.db]);
      } finally {
        await c.end();
      }
    }
    check(same(results[0], results[1]), `${JSON.stringify(results[0])} vs ${JSON.stringify(results[1])}`);
    check(results[0][0].db === 'information_schema' && results[0][0].m === null, JSON.stringify(results[0]));
  },

  'mysqljs: a pool of 10, read-your-writes per connection': async () => {
    const pool = mysql.createPool({ ...login, port: proxyPort, connectionLimit: 10 });
    const getConn = util.promisify(pool.getConnection.bind(pool));
    try {
      await Promise.all(Array.from({ length: 10 }, async (_, s) => {
        const c = await getConn();
        const q = util.promisify(c.query.bind(c));
        try {
          for (let i = 0; i < 30; i++) {
            const v = `pool-${s}-${i}`;
            const r = await q(`INSERT INTO ${rw} (v) VALUES (?)`, [v]);
            const rows = await q(`SELECT v FROM ${rw} WHERE id = ?`, [r.insertId]);
            check(rows.length === 1 && rows[0].v === v, `own write ${v} read back as ${JSON.stringify(rows)}`);
          }
        } finally {
          c.release();
        }
      }));
    } finally {
      await util.promisify(pool.end.bind(pool))();
    }
  },

  'mariadb: pipelined writes and reads on one connection stay in order': async () => {
    const c = await mariadb.createConnection({ ...login, port: proxyPort, pipelining: true });
    try {
      // Sent back to back without waiting: the read after each insert must see it.
      const jobs = [];
      for (let i = 0; i < 40; i++) {
        jobs.push(c.query(`INSERT INTO ${rw} (v) VALUES (?)`, [`pipe-${i}`]));
        jobs.push(c.query(`SELECT COUNT(*) AS n FROM ${rw} WHERE v LIKE 'pipe-%'`));
      }
      const res = await Promise.all(jobs);
      for (let i = 0; i < 40; i++) {
        check(res[2 * i].affectedRows === 1, `insert ${i}`);
        check(Number(res[2 * i + 1][0].n) === i + 1, `read after insert ${i}: ${res[2 * i + 1][0].n}`);
      }
    } finally {
      await c.end();
    }
  },

  'mariadb: execute (binary protocol) matches the primary': async () => {
    const p = await mariadb.createConnection({ ...login, port: proxyPort, dateStrings: true, bigIntAsNumber: false });
    const d = await mariadb.createConnection({ ...login, port: primaryPort, dateStrings: true, bigIntAsNumber: false });
    try {
      const sql = `SELECT id, i, d, f, s, HEX(b) AS hb, dt, n, j FROM ${types} WHERE id = ?`;
      const want = await d.execute(sql, [1]);
      for (let k = 0; k < 3; k++) {
        const got = await p.execute(sql, [1]);
        const strip = (rows) => JSON.stringify(rows, (key, v) => (typeof v === 'bigint' ? v.toString() : v));
        check(strip(got) === strip(want), `${strip(got)} vs ${strip(want)}`);
      }
    } finally {
      await p.end();
      await d.end();
    }
  },

  // The proxy offers bulk operations as the server does: the batch is one
  // COM_STMT_BULK_EXECUTE, answered by one OK (without them the connector
  // sends one execute per row and returns an array of results).
  'mariadb: batch insert, one result as from the server': async () => {
    const c = await mariadb.createConnection({ ...login, port: proxyPort });
    const d = await mariadb.createConnection({ ...login, port: primaryPort });
    try {
      const values = (tag) => Array.from({ length: 200 }, (_, i) => [`batch-${tag}-${i}`]);
      const want = await d.batch(`INSERT INTO ${rw} (v) VALUES (?)`, values('direct'));
      const r = await c.batch(`INSERT INTO ${rw} (v) VALUES (?)`, values('proxy'));
      const show = (x) => JSON.stringify(x, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
      check(!Array.isArray(want) && Number(want.affectedRows) === 200, `direct: ${show(want)}`);
      check(!Array.isArray(r) && Number(r.affectedRows) === 200 && r.warningStatus === want.warningStatus,
        `through the proxy: ${show(r)}`);
      const [n] = await c.query(`SELECT COUNT(*) AS n FROM ${rw} WHERE v LIKE 'batch-proxy-%'`);
      check(Number(n.n) === 200, `rows ${n.n}`);
      const e = await errno(c.batch(`INSERT INTO ${rw} (id, v) VALUES (?, ?)`, [[1, 'dup'], [1, 'dup']]));
      check(e === 1062, `a batch with a duplicate key: errno ${e}`);
    } finally {
      await c.end();
      await d.end();
    }
  },

  'mariadb: reset (COM_RESET_CONNECTION), errors, transactions': async () => {
    const c = await mariadb.createConnection({ ...login, port: proxyPort });
    try {
      await c.query("SET @node_marker = 'm'");
      await c.reset();
      const [a] = await c.query('SELECT @node_marker AS m');
      check(a.m === null, `user variable after reset: ${a.m}`);
      for (const [sql, want] of [['SELEC 1', 1064], [`INSERT INTO ${rw} (v) VALUES ('pipe-0')`, 1062]]) {
        const e = await errno(c.query(sql));
        check(e === want, `${sql}: errno ${e}`);
      }
      await c.beginTransaction();
      await c.query(`INSERT INTO ${rw} (v) VALUES ('tx-rolled-back')`);
      const [inside] = await c.query(`SELECT COUNT(*) AS n FROM ${rw} WHERE v = 'tx-rolled-back'`);
      check(Number(inside.n) === 1, 'uncommitted row not seen inside the transaction');
      await c.rollback();
      const [after] = await c.query(`SELECT COUNT(*) AS n FROM ${rw} WHERE v = 'tx-rolled-back'`);
      check(Number(after.n) === 0, 'rolled back row seen');
    } finally {
      await c.end();
    }
  },
};

async function main() {
  const setup = await mariadb.createConnection({ ...login, port: primaryPort });
  await setup.query(`CREATE TABLE ${types} (id INT PRIMARY KEY, i BIGINT, d DECIMAL(20,6), f DOUBLE, ` +
    's VARCHAR(100) CHARACTER SET utf8mb4, b VARBINARY(64), dt DATETIME(6), n INT NULL, j JSON)');
  await setup.query(`CREATE TABLE ${rw} (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), UNIQUE KEY (v))`);
  // Reads of a session that has not written may go to a replica: wait
  // until both replicas have the tables.
  const [pos] = await setup.query('SELECT @@gtid_binlog_pos AS p');
  for (const port of [primaryPort + 1, primaryPort + 2]) {
    const r = await mariadb.createConnection({ ...login, port });
    const [w] = await r.query('SELECT MASTER_GTID_WAIT(?, 30) AS w', [pos.p]);
    await r.end();
    check(Number(w.w) === 0, `replica :${port} did not reach ${pos.p}`);
  }
  let failed = 0;
  const names = Object.keys(checks);
  try {
    for (const name of names) {
      try {
        await checks[name]();
        console.log(`PASS ${name}`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${name}: ${e.message}`);
      }
    }
  } finally {
    await setup.query(`DROP TABLE IF EXISTS ${types}, ${rw}`);
    await setup.end();
  }
  console.log(`${names.length - failed} of ${names.length} checks passed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`FAIL setup: ${e.message}`);
  process.exit(1);
});
