#!/bin/bash
# First start: create the data directory, then, on a server that listens on no network, set the
# root password and create the database and user named by the environment. Every start: run the
# server as the mysql user, listening on all interfaces of the container.
set -euo pipefail
root_pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
password="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
datadir=/var/lib/mysql
sock=/run/mysqld/init.sock

sql_string() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"; }
sql_name() { printf '`%s`' "$(printf '%s' "$1" | sed 's/`/``/g')"; }

if [[ "${1:-}" == mariadbd && ! -d "$datadir/mysql" ]]; then
    [[ -n "$root_pw" ]] || { echo "error: set MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD)" >&2; exit 1; }
    chown -R mysql:mysql "$datadir" /run/mysqld
    echo "initialising $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$sock" &
    pid=$!
    for _ in $(seq 1 300); do
        mariadb-admin --socket="$sock" -uroot ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    {
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_pw");"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY $(sql_string "$root_pw");"
        echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [[ -n "$database" ]]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$database");"
        fi
        if [[ -n "$user" && -n "$password" ]]; then
            echo "CREATE USER $(sql_string "$user")@'%' IDENTIFIED BY $(sql_string "$password");"
            if [[ -n "$database" ]]; then
                echo "GRANT ALL PRIVILEGES ON $(sql_name "$database").* TO $(sql_string "$user")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$sock" -uroot
    # The password through the environment, never on a command line (`ps` shows those).
    MYSQL_PWD="$root_pw" mariadb-admin --socket="$sock" -uroot shutdown
    wait "$pid" || true
    echo "initialised"
fi

if [[ "${1:-}" == mariadbd ]]; then
    shift
    exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 \
        --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_bin "$@"
fi
exec "$@"
