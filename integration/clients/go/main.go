// Go's database/sql with go-sql-driver/mysql (Debian's package) through
// rwsplit, checked against the same statements straight on the primary.
// The driver prepares every statement that has arguments on the server
// (COM_STMT_PREPARE, EXECUTE, CLOSE) and reads rows in the binary
// protocol; with interpolateParams it sends text instead.
//
//	integration/clients/test_go.sh    (sets GOPATH for Debian's package)
//
// Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450),
// RWSPLIT_PRIMARY_PORT (3306). Each check prints PASS or FAIL; the exit
// status is 1 when any failed. Tables carry a per-run suffix and are
// dropped at the end.
package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

var (
	host        = env("RWSPLIT_HOST", "127.0.0.1")
	proxyPort   = env("RWSPLIT_PORT", "6450")
	primaryPort = env("RWSPLIT_PRIMARY_PORT", "3306")
	run         = fmt.Sprintf("%08x", rand.New(rand.NewSource(time.Now().UnixNano())).Uint32())
)

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func open(port, params string) *sql.DB {
	dsn := fmt.Sprintf("app:app@tcp(%s:%s)/app?timeout=5s&readTimeout=30s&writeTimeout=30s", host, port)
	if params != "" {
		dsn += "&" + params
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		panic(err) // only a malformed DSN, which is this file's mistake
	}
	return db
}

func table(name string) string { return fmt.Sprintf("go_%s_%s", name, run) }

// The columns of every row, as strings (NULL as "NULL"), in order.
func rows(db interface {
	Query(string, ...interface{}) (*sql.Rows, error)
}, query string, args ...interface{}) ([][]string, error) {
	r, err := db.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cols, err := r.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for r.Next() {
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]interface{}, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(cols))
		for i, v := range raw {
			if v == nil {
				row[i] = "NULL"
			} else {
				row[i] = string(v)
			}
		}
		out = append(out, row)
	}
	return out, r.Err()
}

func errorNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// Both sides give the same rows, for each way of sending the statement.
func sameRows(proxy, direct *sql.DB, query string, args ...interface{}) error {
	want, err := rows(direct, query, args...)
	if err != nil {
		return fmt.Errorf("direct: %v", err)
	}
	got, err := rows(proxy, query, args...)
	if err != nil {
		return fmt.Errorf("through rwsplit: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%q: got %v, want %v", query, got, want)
	}
	return nil
}

type check struct {
	name string
	run  func() error
}

func main() {
	proxy := open(proxyPort, "")
	direct := open(primaryPort, "")
	defer proxy.Close()
	defer direct.Close()

	types := table("types")
	rw := table("rw")
	txt := table("tx")
	blob := table("blob")
	conc := table("conc")
	setup := []string{
		"CREATE TABLE " + types + " (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, f DOUBLE, d DECIMAL(20,6), " +
			"s VARCHAR(100) CHARACTER SET utf8mb4, b VARBINARY(64), dt DATETIME(6), da DATE, ti TIME(3), " +
			"e ENUM('a','b'), bi BIT(12), j JSON, n INT NULL)",
		"CREATE TABLE " + rw + " (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), UNIQUE KEY (v))",
		"CREATE TABLE " + txt + " (id INT PRIMARY KEY, v INT)",
		"CREATE TABLE " + blob + " (id INT PRIMARY KEY, b LONGBLOB)",
		"CREATE TABLE " + conc + " (id INT PRIMARY KEY, v INT)",
	}
	for _, s := range setup {
		if _, err := proxy.Exec(s); err != nil {
			fmt.Printf("FAIL setup: %s: %v\n", s, err)
			os.Exit(1)
		}
	}
	defer func() {
		for _, t := range []string{types, rw, txt, blob, conc} {
			proxy.Exec("DROP TABLE IF EXISTS " + t)
		}
	}()

	checks := []check{
		{"ping", func() error { return proxy.Ping() }},
		{"types round trip, prepared and binary rows", func() error {
			_, err := proxy.Exec("INSERT INTO "+types+" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
				1, int64(-9223372036854775808), uint64(18446744073709551615), 3.141592653589793, "12345678901234.123456",
				"héllo wörld 🚀", []byte{0, 1, 2, 255, 0}, time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC),
				"1999-12-31", "-838:59:58.5", "b", 0x5A5, `{"k": [1, 2.5, "x", null]}`, nil)
			if err != nil {
				return err
			}
			q := "SELECT id, i, u, f, d, s, b, dt, da, ti, e, bi, j, n FROM " + types + " WHERE id = ?"
			if err := sameRows(proxy, direct, q, 1); err != nil {
				return err
			}
			// Without arguments the driver sends text; rows come back as text.
			return sameRows(proxy, direct, strings.Replace(q, "?", "1", 1))
		}},
		{"parseTime scans DATETIME into time.Time", func() error {
			db := open(proxyPort, "parseTime=true&loc=UTC")
			defer db.Close()
			var dt time.Time
			if err := db.QueryRow("SELECT dt FROM "+types+" WHERE id = ?", 1).Scan(&dt); err != nil {
				return err
			}
			want := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
			if !dt.Equal(want) {
				return fmt.Errorf("got %v, want %v", dt, want)
			}
			return nil
		}},
		{"expressions", func() error {
			for _, q := range []string{
				"SELECT 1, 'a', NULL, 1.5, -0.0, 18446744073709551615, X'00FF', CAST('2020-01-01' AS DATE)",
				"SELECT CONCAT(REPEAT('x', 300), '🚀'), CHAR_LENGTH('é'), HEX('é')",
			} {
				if err := sameRows(proxy, direct, q); err != nil {
					return err
				}
			}
			return sameRows(proxy, direct, "SELECT ? + 1, ?, ?, ?", 41, "text", nil, []byte("bytes"))
		}},
		{"read-your-writes on one connection", func() error {
			ctx := context.Background()
			conn, err := proxy.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			for i := 0; i < 50; i++ {
				v := fmt.Sprintf("v%d", i)
				res, err := conn.ExecContext(ctx, "INSERT INTO "+rw+" (v) VALUES (?)", v)
				if err != nil {
					return err
				}
				id, err := res.LastInsertId()
				if err != nil || id <= 0 {
					return fmt.Errorf("LastInsertId %d, %v", id, err)
				}
				var got string
				if err := conn.QueryRowContext(ctx, "SELECT v FROM "+rw+" WHERE id = ?", id).Scan(&got); err != nil {
					return fmt.Errorf("read of row %d just written: %v", id, err)
				}
				if got != v {
					return fmt.Errorf("row %d: got %q, want %q", id, got, v)
				}
				var last int64
				if err := conn.QueryRowContext(ctx, "SELECT LAST_INSERT_ID()").Scan(&last); err != nil || last != id {
					return fmt.Errorf("LAST_INSERT_ID() %d (%v), want %d", last, err, id)
				}
			}
			return nil
		}},
		{"server errors keep their numbers and the connection", func() error {
			ctx := context.Background()
			conn, err := proxy.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			cases := []struct {
				query string
				args  []interface{}
				want  uint16
			}{
				{"SELEC 1", nil, 1064},
				{"SELECT * FROM go_missing_" + run, nil, 1146},
				{"SELECT * FROM go_missing_" + run + " WHERE id = ?", []interface{}{1}, 1146},
				{"INSERT INTO " + rw + " (v) VALUES (?)", []interface{}{"v1"}, 1062},
			}
			for _, c := range cases {
				_, err := conn.ExecContext(ctx, c.query, c.args...)
				if errorNumber(err) != c.want {
					return fmt.Errorf("%q: got %v, want error %d", c.query, err, c.want)
				}
				var one int
				if err := conn.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					return fmt.Errorf("after %q: %v", c.query, err)
				}
			}
			return nil
		}},
		{"transactions commit and roll back", func() error {
			tx, err := proxy.Begin()
			if err != nil {
				return err
			}
			if _, err := tx.Exec("INSERT INTO "+txt+" VALUES (?, ?)", 1, 10); err != nil {
				tx.Rollback()
				return err
			}
			var v int
			// Uncommitted: only the primary's transaction can see it.
			if err := tx.QueryRow("SELECT v FROM "+txt+" WHERE id = ?", 1).Scan(&v); err != nil || v != 10 {
				tx.Rollback()
				return fmt.Errorf("read inside the transaction: %d, %v", v, err)
			}
			if err := tx.Rollback(); err != nil {
				return err
			}
			var n int
			if err := proxy.QueryRow("SELECT COUNT(*) FROM " + txt).Scan(&n); err != nil || n != 0 {
				return fmt.Errorf("after rollback %d rows (%v)", n, err)
			}
			tx, err = proxy.BeginTx(context.Background(), &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
			if err != nil {
				return err
			}
			if _, err := tx.Exec("INSERT INTO "+txt+" VALUES (?, ?)", 2, 20); err != nil {
				tx.Rollback()
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			var got int
			if err := direct.QueryRow("SELECT v FROM " + txt + " WHERE id = 2").Scan(&got); err != nil || got != 20 {
				return fmt.Errorf("committed row on the primary: %d, %v", got, err)
			}
			return nil
		}},
		{"read-only transaction", func() error {
			tx, err := proxy.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			var n int
			if err := tx.QueryRow("SELECT COUNT(*) FROM " + txt + " WHERE id = 2").Scan(&n); err != nil {
				return err
			}
			for _, w := range []struct {
				query string
				args  []interface{}
			}{
				{"INSERT INTO " + txt + " VALUES (3, 30)", nil},
				{"UPDATE " + txt + " SET v = ? WHERE id = ?", []interface{}{21, 2}},
			} {
				_, err = tx.Exec(w.query, w.args...)
				if errorNumber(err) != 1792 {
					return fmt.Errorf("%q in a read-only transaction: got %v, want error 1792", w.query, err)
				}
			}
			// The transaction is still open and still reads.
			if err := tx.QueryRow("SELECT COUNT(*) FROM " + txt + " WHERE id = 2").Scan(&n); err != nil || n != 1 {
				return fmt.Errorf("read after the refused writes: %d, %v", n, err)
			}
			return nil
		}},
		{"multiStatements: several results and an error midway", func() error {
			db := open(proxyPort, "multiStatements=true")
			defer db.Close()
			ctx := context.Background()
			conn, err := db.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			r, err := conn.QueryContext(ctx, "SELECT 1; SELECT 'two', 2; SELECT 3")
			if err != nil {
				return err
			}
			var sets []string
			for {
				cols, _ := r.Columns()
				for r.Next() {
					vals := make([]sql.RawBytes, len(cols))
					ptrs := make([]interface{}, len(cols))
					for i := range vals {
						ptrs[i] = &vals[i]
					}
					if err := r.Scan(ptrs...); err != nil {
						r.Close()
						return err
					}
					parts := make([]string, len(vals))
					for i, v := range vals {
						parts[i] = string(v)
					}
					sets = append(sets, strings.Join(parts, ","))
				}
				if !r.NextResultSet() {
					break
				}
			}
			if err := r.Err(); err != nil {
				r.Close()
				return err
			}
			r.Close()
			if want := []string{"1", "two,2", "3"}; !reflect.DeepEqual(sets, want) {
				return fmt.Errorf("results %v, want %v", sets, want)
			}
			_, err = conn.ExecContext(ctx, "INSERT INTO "+txt+" VALUES (5, 50); INSERT INTO "+txt+" VALUES (5, 51); INSERT INTO "+txt+" VALUES (6, 60)")
			if errorNumber(err) != 1062 {
				return fmt.Errorf("batch with a duplicate: got %v, want error 1062", err)
			}
			var n int
			if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+txt+" WHERE id IN (5, 6)").Scan(&n); err != nil || n != 1 {
				return fmt.Errorf("after the failed batch %d rows (%v), want 1", n, err)
			}
			return nil
		}},
		{"interpolateParams sends text", func() error {
			db := open(proxyPort, "interpolateParams=true")
			defer db.Close()
			if _, err := db.Exec("INSERT INTO "+txt+" VALUES (?, ?)", 7, 70); err != nil {
				return err
			}
			return sameRows(db, direct, "SELECT id, v, ?, ? FROM "+txt+" WHERE id = ?", "it's", []byte{0, '\\', '\''}, 7)
		}},
		{"large blob, 5 MiB each way", func() error {
			big := bytes.Repeat([]byte{0, 1, 2, 3, 250, 251, 252, 253}, 5<<17)
			if _, err := proxy.Exec("INSERT INTO "+blob+" VALUES (?, ?)", 1, big); err != nil {
				return err
			}
			var got []byte
			if err := proxy.QueryRow("SELECT b FROM "+blob+" WHERE id = ?", 1).Scan(&got); err != nil {
				return err
			}
			if !bytes.Equal(got, big) {
				return fmt.Errorf("got %d bytes back, want %d equal bytes", len(got), len(big))
			}
			var n int
			if err := proxy.QueryRow("SELECT LENGTH(b) FROM " + blob + " WHERE id = 1").Scan(&n); err != nil || n != len(big) {
				return fmt.Errorf("LENGTH %d (%v)", n, err)
			}
			return nil
		}},
		{"a prepared statement reused by 16 connections at once", func() error {
			for i := 0; i < 100; i++ {
				if _, err := proxy.Exec("INSERT INTO "+conc+" VALUES (?, ?)", i, i*i); err != nil {
					return err
				}
			}
			proxy.SetMaxOpenConns(16)
			stmt, err := proxy.Prepare("SELECT v FROM " + conc + " WHERE id = ?")
			if err != nil {
				return err
			}
			defer stmt.Close()
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := 0; g < 32; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for k := 0; k < 200; k++ {
						id := (g*7 + k) % 100
						var v int
						if err := stmt.QueryRow(id).Scan(&v); err != nil {
							errs <- err
							return
						}
						if v != id*id {
							errs <- fmt.Errorf("id %d: got %d, want %d", id, v, id*id)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			return <-errs
		}},
		{"a query cut off by its context, then the pool still serves", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			var x int
			err := proxy.QueryRowContext(ctx, "SELECT SLEEP(3)").Scan(&x)
			if err == nil {
				return errors.New("SLEEP(3) finished inside a 200 ms context")
			}
			if time.Since(start) > 2*time.Second {
				return fmt.Errorf("the cancelled query returned after %v", time.Since(start))
			}
			for i := 0; i < 20; i++ {
				var v int
				if err := proxy.QueryRow("SELECT ?", i).Scan(&v); err != nil || v != i {
					return fmt.Errorf("after the cancel: %d, %v", v, err)
				}
			}
			return nil
		}},
		{"session variables stay with the connection", func() error {
			ctx := context.Background()
			conn, err := proxy.Conn(ctx)
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, "SET @go_marker = ?, SESSION sql_mode = 'ANSI_QUOTES'", "m"+run); err != nil {
				return err
			}
			for i := 0; i < 10; i++ {
				var marker, mode string
				if err := conn.QueryRowContext(ctx, "SELECT @go_marker, @@SESSION.sql_mode").Scan(&marker, &mode); err != nil {
					return err
				}
				if marker != "m"+run || mode != "ANSI_QUOTES" {
					return fmt.Errorf("read %d: @go_marker %q, sql_mode %q", i, marker, mode)
				}
			}
			return nil
		}},
		{"DSN params the driver sets at connect (charset, collation, sql_mode)", func() error {
			params := "charset=utf8mb4&collation=utf8mb4_unicode_ci&sql_mode=%27TRADITIONAL%27"
			p, d := open(proxyPort, params), open(primaryPort, params)
			defer p.Close()
			defer d.Close()
			p.SetMaxOpenConns(1)
			for i := 0; i < 6; i++ {
				err := sameRows(p, d, "SELECT @@character_set_client, @@collation_connection, @@sql_mode")
				if err != nil {
					return fmt.Errorf("read %d: %v", i, err)
				}
			}
			return nil
		}},
		{"wrong password is refused with error 1045", func() error {
			db, _ := sql.Open("mysql", fmt.Sprintf("app:wrong@tcp(%s:%s)/app?timeout=5s", host, proxyPort))
			defer db.Close()
			err := db.Ping()
			if errorNumber(err) != 1045 {
				return fmt.Errorf("got %v, want error 1045", err)
			}
			return nil
		}},
	}

	failed := 0
	for _, c := range checks {
		if err := c.run(); err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", c.name, err)
		} else {
			fmt.Printf("PASS %s\n", c.name)
		}
	}
	fmt.Printf("%d of %d checks passed\n", len(checks)-failed, len(checks))
	if failed > 0 {
		os.Exit(1)
	}
}
