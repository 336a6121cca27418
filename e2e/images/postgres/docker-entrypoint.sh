#!/bin/bash
# Emulates the official postgres image's docker-entrypoint.sh on the host's Debian
# PostgreSQL: initialises an empty $PGDATA (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB,
# POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, /docker-entrypoint-initdb.d), then runs
# the server bound to the pod IP (env LIFEBOAT_POD_IP, set by the node agent) on the
# container port (5432 unless -p/PGPORT says otherwise). Unix sockets go to the
# container's private /tmp so pods never share one.
set -Eeuo pipefail

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pgbin" ]; then
    echo "error: no PostgreSQL server on this node (apt-get install postgresql)" >&2
    exit 1
fi
export PATH="$pgbin:$PATH"

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi
shift

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
port=${PGPORT:-5432}
prev=
for a in "$@"; do
    [ "$prev" = -p ] && port=$a
    prev=$a
done
listen=${LIFEBOAT_POD_IP:-127.0.0.1}
sockdir=/tmp

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA" 2>/dev/null || true
    chown -R postgres:postgres "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$sockdir -p $port" -w start >/dev/null
    run_psql() { psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc -h "$sockdir" -p "$port" -U "$user" "$@"; }
    if [ "$db" != postgres ]; then
        run_psql -d postgres -q --set db="$db" <<<'CREATE DATABASE :"db";'
    fi
    if [ -d /docker-entrypoint-initdb.d ]; then
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
            *.sh) echo "running $f"; . "$f" ;;
            *.sql) echo "running $f"; run_psql -d "$db" -f "$f" ;;
            *.sql.gz) echo "running $f"; gunzip -c "$f" | run_psql -d "$db" ;;
            *) ;;
            esac
        done
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi

exec postgres -c listen_addresses="$listen" -c unix_socket_directories="$sockdir" -p "$port" "$@"
