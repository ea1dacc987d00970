# Perl's DBI through rwsplit, with both of Debian's drivers (DBD::mysql and
# DBD::MariaDB, on the MariaDB C connector), each with client-side and
# server-side prepared statements, checked against the same statements
# straight on the primary: every column type, read-your-writes with the
# insert id, errors, transactions, stored procedures, multi-statements,
# session state, a 5 MiB value and a streamed result left early.
#
#   RWSPLIT_PORT=6450 perl integration/clients/test_perl.pl
#
# Environment: RWSPLIT_HOST (127.0.0.1), RWSPLIT_PORT (6450, the proxy),
# RWSPLIT_PRIMARY_PORT (3306). Each check prints PASS or FAIL; the exit
# status is 1 when any failed. Tables carry a per-run suffix and are
# dropped at the end.
use strict;
use warnings;
use DBI;

my $HOST = $ENV{RWSPLIT_HOST} // '127.0.0.1';
my $PROXY_PORT = $ENV{RWSPLIT_PORT} // 6450;
my $PRIMARY_PORT = $ENV{RWSPLIT_PRIMARY_PORT} // 3306;
my $RUN = sprintf('%08x', int(rand(0xffffffff)));
$| = 1;

# DBD::mysql names its attributes mysql_*, DBD::MariaDB mariadb_*.
sub connect_to {
    my ($driver, $port, $server_prepare) = @_;
    my $p = $driver eq 'mysql' ? 'mysql' : 'mariadb';
    my $dsn = "DBI:$driver:database=app;host=$HOST;port=$port;${p}_connect_timeout=5";
    return DBI->connect($dsn, 'app', 'app', {
        RaiseError => 1, PrintError => 0, AutoCommit => 1,
        "${p}_server_prepare" => $server_prepare, "${p}_multi_statements" => 1,
    }) // die "cannot connect to $HOST:$port: $DBI::errstr\n";
}

# A value as text, with undef shown apart from every string.
sub show { my ($v) = @_; defined $v ? "'$v'" : 'NULL' }
sub rows_text { my ($rows) = @_; join(' | ', map { join(', ', map { show($_) } @$_) } @$rows) }

sub error_of {
    my ($code) = @_;
    eval { $code->(); 1 } and return 0;
    return $DBI::err // -1;
}

my $failed = 0;
my $count = 0;
sub run_check {
    my ($name, $code) = @_;
    $count++;
    if (eval { $code->(); 1 }) {
        print "PASS $name\n";
    } else {
        $failed++;
        my $why = $@;
        chomp $why;
        print "FAIL $name: $why\n";
    }
}
sub check { my ($ok, $what) = @_; die "$what\n" unless $ok }

my @tables;
for my $driver ('mysql', 'MariaDB') {
    for my $sp (0, 1) {
        my $tag = "DBD::$driver, " . ($sp ? 'server' : 'client') . '-side prepares';
        my $p = connect_to($driver, $PROXY_PORT, $sp);
        my $d = connect_to($driver, $PRIMARY_PORT, $sp);
        my $t = lc("pl_${driver}_${sp}_$RUN");
        push @tables, $t;
        $p->do("CREATE TABLE $t (id INT AUTO_INCREMENT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, f DOUBLE, "
            . "dc DECIMAL(20,6), s VARCHAR(100), b LONGBLOB, d DATE, dt DATETIME(6), tm TIME, j JSON, e ENUM('x','y'), n INT NULL)");

        run_check("$tag: prepared inserts of every type, each read back at once by its insert id", sub {
            my $ins = $p->prepare("INSERT INTO $t (i,u,f,dc,s,b,d,dt,tm,j,e,n) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
            my $sel = $p->prepare("SELECT id, s FROM $t WHERE id = ?");
            for my $k (1 .. 30) {
                $ins->execute(-9223372036854775807 + $k, '18446744073709551615', 1.5 * $k, '12345.678901',
                    "s$k 'q' \\", "\0\xff\x01" x $k, '2024-02-29', '2024-01-01 10:11:12.123456', '-838:59:59',
                    '{"a":[1,2]}', 'y', $k % 2 ? undef : $k);
                my $id = $p->last_insert_id(undef, undef, undef, undef);
                check($ins->rows == 1, "insert $k: rows " . $ins->rows);
                $sel->execute($id);
                my $got = $sel->fetchall_arrayref;
                check(@$got == 1 && $got->[0][0] == $id && $got->[0][1] eq "s$k 'q' \\", "insert $k (id $id) read back as " . rows_text($got));
            }
        });

        run_check("$tag: rows equal to the primary's, text and with placeholders", sub {
            my $q = "SELECT * FROM $t ORDER BY id";
            my ($got, $want) = ($p->selectall_arrayref($q), $d->selectall_arrayref($q));
            check(@$want == 30, scalar(@$want) . ' rows on the primary');
            check(rows_text($got) eq rows_text($want), 'rows differ from the primary\'s');
            my $q2 = "SELECT id, b, n FROM $t WHERE id > ? AND s LIKE ? ORDER BY id";
            my ($g2, $w2) = ($p->selectall_arrayref($q2, undef, 5, 's%'), $d->selectall_arrayref($q2, undef, 5, 's%'));
            check(@$w2 == 25 && rows_text($g2) eq rows_text($w2), 'placeholder rows differ: ' . scalar(@$g2));
        });

        run_check("$tag: errors keep their numbers and the connection", sub {
            for my $case (["INSERT INTO $t (id) VALUES (1)", 1062], ["SELECT nosuch FROM $t", 1054],
                ['SELEC 1', 1064], ["SELECT * FROM pl_missing_$RUN", 1146]) {
                my ($sql, $want) = @$case;
                my $got = error_of(sub { $p->selectall_arrayref($sql) });
                check($got == $want, "$sql: error $got, want $want");
                check($p->selectrow_array('SELECT 1') == 1, "connection after $sql");
            }
            check($p->ping, 'ping');
        });

        run_check("$tag: transactions roll back and commit", sub {
            $p->begin_work;
            $p->do("UPDATE $t SET s = 'tx' WHERE id = 1");
            my ($inside) = $p->selectrow_array("SELECT s FROM $t WHERE id = 1");
            $p->rollback;
            my ($after) = $p->selectrow_array("SELECT s FROM $t WHERE id = 1");
            check($inside eq 'tx' && $after ne 'tx', "inside '$inside', after rollback '$after'");
            $p->begin_work;
            my $n = $p->do("UPDATE $t SET s = 'committed' WHERE id = 2");
            $p->commit;
            my ($mine) = $p->selectrow_array("SELECT s FROM $t WHERE id = 2");
            my ($primary) = $d->selectrow_array("SELECT s FROM $t WHERE id = 2");
            check($n == 1 && $mine eq 'committed' && $primary eq 'committed', "after commit: $n, '$mine', '$primary'");
        });

        run_check("$tag: affected rows as the client asked (found rows or changed rows)", sub {
            my $pfx = $driver eq 'mysql' ? 'mysql' : 'mariadb';
            my $changed = DBI->connect("DBI:$driver:database=app;host=$HOST;port=$PROXY_PORT;${pfx}_client_found_rows=0",
                'app', 'app', { RaiseError => 1, PrintError => 0, "${pfx}_server_prepare" => $sp });
            my $set = $p->do("UPDATE $t SET e = 'x' WHERE id <= 10");
            my $found = $p->do("UPDATE $t SET e = 'x' WHERE id <= 10");
            my $none = $changed->do("UPDATE $t SET e = 'x' WHERE id <= 10");
            my $one = $changed->do("UPDATE $t SET e = 'y' WHERE id = 10");
            my $del = $p->do("DELETE FROM $t WHERE id BETWEEN 25 AND 27");
            $changed->disconnect;
            check("$set $found $none $one $del" eq '10 10 0E0 1 3', "affected: $set $found $none $one $del");
        });

        run_check("$tag: session state (user variable, temporary table, time zone) across reads", sub {
            $p->do("SET \@pl_marker = 'm$RUN', time_zone = '+05:30'");
            $p->do('CREATE TEMPORARY TABLE pl_tmp (a INT)');
            $p->do('INSERT INTO pl_tmp VALUES (1), (2)');
            for my $i (1 .. 6) {
                my $got = $p->selectrow_arrayref("SELECT \@pl_marker, \@\@time_zone, (SELECT COUNT(*) FROM pl_tmp)");
                check(rows_text([$got]) eq "'m$RUN', '+05:30', '2'", "read $i: " . rows_text([$got]));
            }
            $p->do('DROP TEMPORARY TABLE pl_tmp');
        });

        run_check("$tag: a 5 MiB value written and read back", sub {
            my $big = join('', map { chr($_) } 0 .. 255) x (5 * 4096);
            my $u = $p->prepare("UPDATE $t SET b = ? WHERE id = 3");
            $u->bind_param(1, $big, DBI::SQL_BLOB);
            $u->execute;
            my ($len, $back) = $p->selectrow_array("SELECT LENGTH(b), b FROM $t WHERE id = 3");
            check($len == length($big) && $back eq $big, "length $len");
        });

        run_check("$tag: plain reads are served by a replica", sub {
            return if $PROXY_PORT == $PRIMARY_PORT;    # checking the checks
            # Right after the 5 MiB write, replicas still applying it may
            # be behind: reads then go to the primary, rightly. Until they
            # catch up (10 s at most), every read of a round of 10 must
            # come from a replica.
            my %ports;
            for my $round (1 .. 50) {
                %ports = ();
                $ports{ ($p->selectrow_array('SELECT @@port'))[0] }++ for 1 .. 10;
                last unless $ports{$PRIMARY_PORT};
                select(undef, undef, undef, 0.2);
            }
            check(!$ports{$PRIMARY_PORT}, 'reads on the primary: ' . join(', ', %ports));
        });

        # Multiple result sets and multi-statements go through client-side
        # prepares only: both drivers refuse them with server-side ones,
        # straight on a server too.
        if (!$sp) {
            run_check("$tag: multi-statements return every result", sub {
                my @seen;
                for my $conn ($p, $d) {
                    my $m = $conn->prepare("SELECT 1; SELECT 2, 'b'; UPDATE $t SET i = i + 1 WHERE id = 4; SELECT i FROM $t WHERE id = 4");
                    $m->execute;
                    my @results;
                    do { push @results, $m->{NUM_OF_FIELDS} ? rows_text($m->fetchall_arrayref) : 'affected ' . $m->rows } while ($m->more_results);
                    push @seen, join(' / ', @results);
                }
                my ($i) = $d->selectrow_array("SELECT i FROM $t WHERE id = 4");
                (my $want = $seen[1]) =~ s/'$i'\z/'@{[$i - 1]}'/;
                check(@seen == 2 && $seen[0] eq $want && $seen[0] =~ /affected 1/, "proxy: $seen[0]; primary: $seen[1]");
            });
            run_check("$tag: CALL of a procedure with two result sets", sub {
                my $proc = "pl_proc_${driver}_$RUN";
                $p->do("CREATE PROCEDURE $proc(IN x INT) BEGIN SELECT x; SELECT x + 1, 'a'; END");
                my $c = $p->prepare("CALL $proc(?)");
                $c->execute(7);
                my @seen;
                do { push @seen, rows_text($c->fetchall_arrayref) if $c->{NUM_OF_FIELDS} } while ($c->more_results);
                $p->do("DROP PROCEDURE $proc");
                check("@seen" eq "'7' '8', 'a'", "@seen");
            });
        }
        # DBD::MariaDB leaves the connection out of sync after finish() on
        # an unbuffered result, and DBD::mysql hangs in it with server-side
        # prepares, straight on a server as through the proxy.
        if (!$sp && $driver eq 'mysql') {
            run_check("$tag: a streamed result left after 1,000 of 200,000 rows, then a query", sub {
                my $u = $p->prepare('SELECT seq FROM seq_1_to_200000', { mysql_use_result => 1 });
                $u->execute;
                my $n = 0;
                while (my $r = $u->fetch) { check($r->[0] == ++$n, "row $n: $r->[0]"); last if $n == 1000 }
                $u->finish;
                my ($after) = $p->selectrow_array('SELECT 41 + 1');
                check($after == 42, "query after the stream: $after");
            });
        }
        $p->disconnect;
        $d->disconnect;
    }
}

run_check('wrong password is refused with error 1045', sub {
    my $got = error_of(sub {
        DBI->connect("DBI:mysql:host=$HOST;port=$PROXY_PORT", 'app', 'wrong', { RaiseError => 1, PrintError => 0 })
    });
    check($got == 1045, "error $got");
});

my $d = connect_to('mysql', $PRIMARY_PORT, 0);
$d->do("DROP TABLE IF EXISTS $_") for @tables;
$d->disconnect;
print $count - $failed, " of $count checks passed\n";
exit($failed ? 1 : 0);
