// mysql2 for Node.js through rwsplit (RWSPLIT_PORT, default 6450) with the
// shipped config (multiplexing, read-your-writes by GTID): a pool of 20
// client connections, each running prepared inserts, reads of its own row
// right after (served by replicas), LAST_INSERT_ID(), and transactions
// with a read inside them. Exits non-zero on the first wrong answer.
//
//   node integration/clients/node/test_mysql2.js

'use strict';
const mysql = require('mysql2/promise');

const port = Number(process.env.RWSPLIT_PORT || 6450);
const sessions = 20;
const rounds = 25;

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function session(pool, table, s) {
  const c = await pool.getConnection();
  try {
    for (let i = 0; i < rounds; i++) {
      const v = `s${s}-${i}`;
      const [r] = await c.execute(`INSERT INTO ${table} (v) VALUES (?)`, [v]);
      check(r.insertId > 0, 'no insert id');
      // Read-your-writes: the row is there at once.
      const [[row]] = await c.execute(`SELECT v FROM ${table} WHERE id = ?`, [r.insertId]);
      check(row && row.v === v, `own write not read back: ${JSON.stringify(row)} for ${v}`);
      const [[li]] = await c.query('SELECT LAST_INSERT_ID() AS id');
      check(Number(li.id) === r.insertId, `LAST_INSERT_ID() ${li.id}, expected ${r.insertId}`);
      await c.beginTransaction();
      await c.execute(`UPDATE ${table} SET v = ? WHERE id = ?`, [`t${v}`, r.insertId]);
      const [[inside]] = await c.execute(`SELECT v FROM ${table} WHERE id = ?`, [r.insertId]);
      check(inside.v === `t${v}`, 'a read inside the transaction missed its update');
      if (i % 5 === 4) {
        await c.rollback();
      } else {
        await c.commit();
      }
    }
  } finally {
    c.release();
  }
}

(async () => {
  const pool = mysql.createPool({
    host: '127.0.0.1', port, user: 'app', password: 'app', database: 'app',
    connectionLimit: sessions,
  });
  const table = `node_mysql2_${process.pid}`;
  await pool.query(`CREATE TABLE ${table} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))`);
  try {
    const runs = [];
    for (let s = 0; s < sessions; s++) runs.push(session(pool, table, s));
    await Promise.all(runs);
    const [[n]] = await pool.query(`SELECT COUNT(*) AS n, SUM(v LIKE 't%') AS updated FROM ${table}`);
    check(Number(n.n) === sessions * rounds, `rows ${n.n}`);
    check(Number(n.updated) === sessions * (rounds - rounds / 5), `committed updates ${n.updated}`);
    console.log(`mysql2: ${sessions} sessions x ${rounds} rounds passed (${n.n} rows)`);
  } finally {
    await pool.query(`DROP TABLE ${table}`);
    await pool.end();
  }
})().catch((e) => {
  console.error('mysql2: FAILED:', e);
  process.exit(1);
});
