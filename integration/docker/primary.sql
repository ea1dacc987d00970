-- Runs once, on the primary's first start (docker-entrypoint-initdb.d).
-- Binary-logged, so the replicas receive all of it through GTID replication.
-- mysql_native_password to match the MariaDB lab (8.4 needs
-- --mysql-native-password=ON for that, see docker-compose.yml).
CREATE DATABASE IF NOT EXISTS app;

CREATE USER 'repl'@'%' IDENTIFIED WITH mysql_native_password BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';

CREATE USER 'app'@'%' IDENTIFIED WITH mysql_native_password BY 'app';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';
GRANT REPLICATION CLIENT, PROCESS ON *.* TO 'app'@'%';

CREATE USER 'monitor'@'%' IDENTIFIED WITH mysql_native_password BY 'monitor';
GRANT REPLICATION CLIENT, PROCESS ON *.* TO 'monitor'@'%';

CREATE USER 'admin'@'%' IDENTIFIED WITH mysql_native_password BY 'admin';
GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;
