# Starts a throwaway Postgres cluster on loopback for the tests (sourced).
# Sets PG_URL (superuser URL of the `postgres` database) and registers cleanup.
# Tests run it with fsync off (speed); PG_DURABLE=1 keeps Postgres' durable defaults
# (for benchmarks).

pg_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    ensure_packages postgresql
    local bin; bin=$(pg_bin)
    [ -n "$bin" ] || { echo "postgres binaries not found under /usr/lib/postgresql" >&2; return 1; }
    PG_DIR=$(mktemp -d /tmp/switchboard-pg.XXXXXX)
    local port; port=$(free_port)
    local run=()
    local fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${PG_DURABLE:-0}" = 1 ] && fast=""
    if [ "$(id -u)" = 0 ]; then
        # initdb refuses to run as root: use the postgres user the package created.
        chown postgres:postgres "$PG_DIR"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 $fast" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
    PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
    PG_RUN=("${run[@]}")
    PG_BIN="$bin"
    trap stop_postgres EXIT
    echo "==> postgres running on 127.0.0.1:$port (data in $PG_DIR)"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
