<?php
// PHP's own protocol implementation (mysqlnd, behind mysqli and PDO)
// through rwsplit, checked against the same calls straight to the primary.
//
// Needs the lab (integration/lab.sh up) and a running proxy:
//
//     RWSPLIT_PORT=6450 php integration/clients/test_php.php
//
// Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
// RWSPLIT_PRIMARY_PORT (3306). mysqlnd does not ask for session tracking,
// and it reads the info of an OK packet ("Rows matched: ...") strictly.
// Exits non-zero on the first failed check.

mysqli_report(MYSQLI_REPORT_OFF);
$host = getenv('RWSPLIT_HOST') ?: '127.0.0.1';
$proxy = (int) (getenv('RWSPLIT_PORT') ?: 6450);
$primary = (int) (getenv('RWSPLIT_PRIMARY_PORT') ?: 3306);
$run = bin2hex(random_bytes(5));
$checks = 0;

function check($ok, $what) {
    global $checks;
    if (!$ok) {
        fwrite(STDERR, "FAIL: $what\n");
        exit(1);
    }
    $checks++;
}

function mysqli_to($port) {
    global $host;
    $c = new mysqli($host, 'app', 'app', 'app', $port);
    check(!$c->connect_errno, "connect to :$port: " . $c->connect_error);
    return $c;
}

function pdo_to($port) {
    global $host;
    return new PDO("mysql:host=$host;port=$port;dbname=app;charset=utf8mb4", 'app', 'app', [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => false,
    ]);
}

// What a sequence of writes reports (affected rows, info), per server.
function writes_report($port, $table) {
    $c = mysqli_to($port);
    $out = [];
    $statements = [
        "CREATE TABLE $table (id INT PRIMARY KEY, v INT)",
        "INSERT INTO $table VALUES (1, 1), (2, 2), (3, 3)",
        "INSERT INTO $table SELECT id + 10, v FROM $table",
        "UPDATE $table SET v = v + 1 WHERE id < 10",
        "UPDATE $table SET v = v WHERE id = -1",
        "DELETE FROM $table WHERE id = 13",
        "ALTER TABLE $table ADD COLUMN w INT",
    ];
    foreach ($statements as $sql) {
        $ok = $c->query($sql);
        check($ok === true, "$sql on :$port: " . $c->error);
        $out[] = [$sql, $c->affected_rows, $c->info];
        // Read-your-writes: the session sees its rows at once.
        $res = $c->query("SELECT COUNT(*) FROM $table");
        check($res !== false, "count after $sql on :$port: " . $c->error);
        $out[] = ['count', $res->fetch_row()[0]];
    }
    // A prepared UPDATE reports the same.
    $st = $c->prepare("UPDATE $table SET w = ? WHERE id > ?");
    check($st !== false, "prepare on :$port: " . $c->error);
    $w = 7;
    $id = 1;
    $st->bind_param('ii', $w, $id);
    check($st->execute(), "prepared update on :$port: " . $st->error);
    $out[] = ['prepared update', $st->affected_rows, $c->info];
    $st->close();
    $res = $c->query("SELECT id, v, w FROM $table ORDER BY id");
    $out[] = $res->fetch_all();
    check($c->query("DROP TABLE $table"), "drop on :$port");
    $c->close();
    return $out;
}

// (The same table name on both sides, one after the other: the reports
// include the statements.)
$want = writes_report($primary, "php_w_$run");
$got = writes_report($proxy, "php_w_$run");
check($got == $want, "writes report differently through the proxy:\n" . json_encode([$got, $want]));
check($want[2][2] === 'Records: 3  Duplicates: 0  Warnings: 0', "the info is read: " . json_encode($want[2]));

// PDO with server-side prepares: a write, then its row, at once.
$table = "php_pdo_$run";
$pdo = pdo_to($proxy);
$pdo->exec("CREATE TABLE $table (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2), at DATETIME(6), data BLOB)");
$ins = $pdo->prepare("INSERT INTO $table VALUES (?, ?, ?, ?, ?)");
$sel = $pdo->prepare("SELECT name, amount, at, data FROM $table WHERE id = ?");
for ($i = 1; $i <= 20; $i++) {
    $blob = "\x00\xff" . chr($i);
    $at = sprintf('2024-02-29 12:00:00.%06d', $i);
    $ins->execute([$i, "n\u{1F600}$i", "$i.25", $at, $blob]);
    $sel->execute([$i]);
    $row = $sel->fetch(PDO::FETCH_NUM);
    check($row == ["n\u{1F600}$i", "$i.25", $at, $blob], "row $i read back: " . json_encode($row));
}
$upd = $pdo->prepare("UPDATE $table SET amount = amount + 1 WHERE id <= ?");
$upd->execute([5]);
check($upd->rowCount() === 5, "rowCount of a prepared UPDATE: " . $upd->rowCount());
check($pdo->exec("UPDATE $table SET name = 'x' WHERE id > 15") === 5, "exec of an UPDATE");
$pdo->beginTransaction();
$pdo->exec("DELETE FROM $table");
$pdo->rollBack();
check((int) $pdo->query("SELECT COUNT(*) FROM $table")->fetchColumn() === 20, "rollback kept the rows");
$pdo->exec("DROP TABLE $table");

// A SET sent as a native prepared statement applies to reads on the
// replicas too, and they still go there.
$pdo = pdo_to($proxy);
$pdo->prepare("SET time_zone = ?")->execute(['+05:30']);
// Replicas still applying this client's earlier writes make its reads
// go to the primary, rightly: rounds of 6 reads, up to 10 s, until one
// runs wholly on replicas.
$deadline = microtime(true) + 10;
do {
    $ports = [];
    for ($i = 0; $i < 6; $i++) {
        [$tz, $port] = $pdo->query("SELECT @@time_zone, @@port")->fetch(PDO::FETCH_NUM);
        check($tz === '+05:30', "time zone of read $i: $tz");
        $ports[$port] = true;
    }
    $on_replicas = $proxy === $primary || !isset($ports[$primary]);
} while (!$on_replicas && microtime(true) < $deadline && usleep(200000) === null);
check($on_replicas, "reads after a prepared SET on the replicas: " . json_encode(array_keys($ports)));

// KILL QUERY with the id SELECT CONNECTION_ID() gives (PDO has no other).
$victim = pdo_to($proxy);
$id = (int) $victim->query("SELECT CONNECTION_ID()")->fetchColumn();
check($id > 0, "an id");
$pid = pcntl_fork();
if ($pid === 0) {
    // The child ends by exec, not exit: exit would close the victim's
    // connection, which it inherited, with a COM_QUIT.
    usleep(500000);
    try {
        pdo_to($proxy)->exec("KILL QUERY $id");
        pcntl_exec('/bin/true');
    } catch (PDOException $e) {
        fwrite(STDERR, "KILL QUERY $id: " . $e->getMessage() . "\n");
    }
    pcntl_exec('/bin/false');
}
$start = microtime(true);
try {
    // An interrupted SLEEP returns 1, or fails with 1317 when prepared.
    $outcome = $victim->query("SELECT SLEEP(10)")->fetchColumn();
} catch (PDOException $e) {
    $outcome = $e->errorInfo[1];
}
$elapsed = microtime(true) - $start;
pcntl_waitpid($pid, $status);
check($status === 0, "the killer's KILL QUERY $id succeeded");
check($elapsed < 8 && ($outcome == 1 || $outcome == 1317), "the sleep was killed (took $elapsed s, gave $outcome)");
check($victim->query("SELECT 'alive'")->fetchColumn() === 'alive', "the victim goes on");

// A refused change_user keeps the connection, as its user.
$c = mysqli_to($proxy);
$c->query("SET @before = 1");
check($c->change_user('app', 'wrong', 'app') === false && $c->errno === 1045, "change_user refused: " . $c->errno);
$row = $c->query("SELECT CURRENT_USER(), @before")->fetch_row();
check($row === ['app@%', null], "after a refused change_user: " . var_export($row, true));
check($c->change_user('app', 'app', 'app') === true, "change_user accepted: " . $c->error);
check($c->query("SELECT 1")->fetch_row() === ['1'], "after change_user");

echo "php (mysqli and PDO over mysqlnd): $checks checks passed\n";
