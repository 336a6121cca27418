#!/bin/bash
# Emulates the official mariadb image's docker-entrypoint.sh on the host's Debian
# MariaDB: initialises an empty /var/lib/mysql (MARIADB_ROOT_PASSWORD,
# MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD and
# their MYSQL_* aliases, /docker-entrypoint-initdb.d), then runs mariadbd bound to the
# pod IP (env LIFEBOAT_POD_IP) on port 3306 (or --port). The host's my.cnf is ignored
# (--no-defaults) and the socket lives in the container's private /tmp.
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
    set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then
    exec "$@"
fi
shift

datadir=/var/lib/mysql
port=3306
for a in "$@"; do
    case "$a" in
    --datadir=*) datadir=${a#--datadir=} ;;
    --port=*) port=${a#--port=} ;;
    esac
done
listen=${LIFEBOAT_POD_IP:-127.0.0.1}
socket=/tmp/mysqld.sock

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$datadir"
    chown -R mysql:mysql "$datadir"
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$BASH_SOURCE" mariadbd "$@"
fi

env_or() {
    local v
    for n in "$@"; do
        v=${!n:-}
        if [ -n "$v" ]; then
            printf '%s' "$v"
            return
        fi
    done
}
root_pw=$(env_or MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD)
allow_empty=$(env_or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD)
database=$(env_or MARIADB_DATABASE MYSQL_DATABASE)
user=$(env_or MARIADB_USER MYSQL_USER)
password=$(env_or MARIADB_PASSWORD MYSQL_PASSWORD)
sql_escape() { printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g"; }

if [ ! -d "$datadir/mysql" ]; then
    if [ -z "$root_pw" ] && [ -z "$allow_empty" ]; then
        echo "error: Database is uninitialized and password option is not specified" >&2
        echo "	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD" >&2
        exit 1
    fi
    mkdir -p "$datadir"
    mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >/dev/null
    mariadbd --no-defaults --datadir="$datadir" --skip-networking --socket="$socket" \
        --pid-file=/tmp/mysqld-init.pid &
    init_pid=$!
    for _ in $(seq 60); do
        mariadb --no-defaults -S "$socket" -uroot -e 'select 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
        echo "ALTER USER root@localhost IDENTIFIED BY '$(sql_escape "$root_pw")';"
        echo "CREATE USER root@'%' IDENTIFIED BY '$(sql_escape "$root_pw")';"
        echo "GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;"
        if [ -n "$database" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"
        fi
        if [ -n "$user" ] && [ -n "$password" ]; then
            echo "CREATE USER '$(sql_escape "$user")'@'%' IDENTIFIED BY '$(sql_escape "$password")';"
            if [ -n "$database" ]; then
                echo "GRANT ALL ON \`$database\`.* TO '$(sql_escape "$user")'@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --no-defaults -S "$socket" -uroot
    if [ -d /docker-entrypoint-initdb.d ]; then
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; mariadb --no-defaults -S "$socket" -uroot -p"$root_pw" ${database:+"$database"} <"$f" ;;
            *) ;;
            esac
        done
    fi
    kill "$init_pid"
    wait "$init_pid" || true
    echo "MariaDB init process done. Ready for start up."
fi

exec mariadbd --no-defaults --datadir="$datadir" --bind-address="$listen" --port="$port" \
    --socket="$socket" --pid-file=/tmp/mysqld.pid --skip-name-resolve "$@"
