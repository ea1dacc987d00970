-- Runs once, on each replica's first start (docker-entrypoint-initdb.d), after
-- the primary is healthy (depends_on in docker-compose.yml).
-- Drop any GTIDs this replica wrote itself during initialisation, so its
-- gtid_executed is a subset of the primary's; then replicate everything,
-- users and database app included, from the primary's first transaction.
RESET BINARY LOGS AND GTIDS;

CHANGE REPLICATION SOURCE TO
    SOURCE_HOST = 'primary',
    SOURCE_PORT = 3306,
    SOURCE_USER = 'repl',
    SOURCE_PASSWORD = 'repl',
    SOURCE_AUTO_POSITION = 1,
    SOURCE_CONNECT_RETRY = 1,
    GET_SOURCE_PUBLIC_KEY = 1;

START REPLICA;
