#!/usr/bin/env bash
# Start / stop a real STAC API for tests/catalog.rs: stac-fastapi-pgstac (what large public
# catalogs run) on PostgreSQL 15 + PostGIS, both bound to 127.0.0.1 on free ports, loaded with the
# Earth Search items in crates/eocube/tests/data/stac.
#
# Usage: scripts/stac-server.sh install|start|stop|status
#   install only installs what is missing (for scripts/setup.sh); start does it too.
#   start   installs what is missing (Debian postgresql-15-postgis-3; stac-fastapi.pgstac,
#           pypgstac[psycopg] and uvicorn into .venv), then initdb (first time only), starts
#           PostgreSQL, `pypgstac migrate`, loads collections + items (upsert, so re-runs are
#           harmless), starts uvicorn and waits until /collections answers. If the server from a
#           previous start still answers, it is reused.
#   stop    kills uvicorn by its PID and stops PostgreSQL with `pg_ctl stop` (data dir is kept).
# State lives in $EOCUBE_STAC_DIR (default target/eocube-stac): pg/ (data dir), run/ (socket),
# logs, pid files, and `env` (`export EOCUBE_TEST_STAC=http://127.0.0.1:PORT`) to be sourced.
#
# The e2e archive (scripts/e2e_fixtures.py, for tests/build.rs) is loaded too, into its own
# collection `e2e-s2-l2a`, when $EOCUBE_FIXTURES/e2e exists and $EOCUBE_TEST_HTTP (the nginx of
# scripts/servers.sh) is set: its asset hrefs point at that nginx, so it is reloaded (the
# collection's items deleted, then loaded again) whenever the nginx URL or the archive changes,
# also when a running server is reused. `e2e.loaded` records what was loaded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${EOCUBE_STAC_DIR:-$ROOT/target/eocube-stac}"
DATA="$ROOT/crates/eocube/tests/data/stac"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
export DEBIAN_FRONTEND=noninteractive

log() { echo "stac-server: $*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi

# PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

ensure_deps() {
    if [ ! -x "$PGBIN/initdb" ]; then
        log "no PostgreSQL 15 in $PGBIN; installing postgresql-15"
        $SUDO apt-get update -q </dev/null >/dev/null
        $SUDO apt-get install -y -q --no-install-recommends postgresql-15 </dev/null >/dev/null
    fi
    if [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
        log "installing postgresql-15-postgis-3"
        $SUDO apt-get install -y -q --no-install-recommends postgresql-15-postgis-3 </dev/null >/dev/null \
            || { $SUDO apt-get update -q </dev/null >/dev/null \
                && $SUDO apt-get install -y -q --no-install-recommends postgresql-15-postgis-3 </dev/null >/dev/null; }
    fi
    [ -x "$PY" ] || { log "creating .venv"; python3 -m venv "$VENV"; }
    if ! "$PY" -c 'import stac_fastapi.pgstac, pypgstac, psycopg, uvicorn' >/dev/null 2>&1; then
        log "installing stac-fastapi.pgstac, pypgstac[psycopg], uvicorn into .venv"
        "$PY" -m pip install -q --disable-pip-version-check \
            "stac-fastapi.pgstac>=6,<8" "pypgstac[psycopg]>=0.9,<0.11" "uvicorn>=0.30" </dev/null
    fi
}

# The e2e archive into collection e2e-s2-l2a, hrefs on the nginx of $EOCUBE_TEST_HTTP. Needs the
# PG* variables of a running PostgreSQL. Idempotent: skipped when e2e.loaded says it is current.
load_e2e() {
    local e2e="${EOCUBE_FIXTURES:-$ROOT/target/eocube-fixtures}/e2e"
    if [ ! -f "$e2e/items.ndjson.in" ]; then
        log "no e2e archive in $e2e (run scripts/e2e_fixtures.py): collection e2e-s2-l2a not loaded"
        return 0
    fi
    if [ -z "${EOCUBE_TEST_HTTP:-}" ]; then
        log "EOCUBE_TEST_HTTP is not set (start scripts/servers.sh and source its env first): e2e items not loaded"
        return 0
    fi
    local key
    key="$EOCUBE_TEST_HTTP $(cat "$e2e/.stamp")"
    if [ "$(cat "$DIR/e2e.loaded" 2>/dev/null || true)" = "$key" ]; then
        return 0
    fi
    sed "s|@HTTP@|${EOCUBE_TEST_HTTP%/}|g" "$e2e/items.ndjson.in" >"$DIR/e2e-items.ndjson"
    "$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$e2e/collection.json" \
        >"$DIR/e2e-collection.ndjson"
    { "$VENV/bin/pypgstac" load collections "$DIR/e2e-collection.ndjson" --method upsert \
        && "$PGBIN/psql" -q -v ON_ERROR_STOP=1 -c "DELETE FROM pgstac.items WHERE collection = 'e2e-s2-l2a'" \
        && "$VENV/bin/pypgstac" load items "$DIR/e2e-items.ndjson" --method upsert; } >"$DIR/load-e2e.log" 2>&1 \
        || { log "loading the e2e archive failed:"; cat "$DIR/load-e2e.log" >&2; exit 1; }
    echo "$key" >"$DIR/e2e.loaded"
    log "loaded $(wc -l <"$DIR/e2e-items.ndjson") e2e items into e2e-s2-l2a (assets on $EOCUBE_TEST_HTTP)"
}

stop() {
    stop_pid uvicorn "$DIR/uvicorn.pid"
    if [ -f "$DIR/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null 2>&1 && log "stopped PostgreSQL" || true
    fi
    rm -f "$DIR/env"
}

# The API from a previous start answers: reuse it (tests only read).
running() {
    [ -f "$DIR/env" ] && [ -f "$DIR/uvicorn.pid" ] && alive "$(cat "$DIR/uvicorn.pid")" || return 1
    local url
    url="$(sed -n 's/^export EOCUBE_TEST_STAC=//p' "$DIR/env")"
    curl -fsS -o /dev/null --max-time 5 "$url/collections"
}

start() {
    if running; then
        log "already running ($(cat "$DIR/env"))"
        export PGHOST=127.0.0.1 PGPORT="$(cat "$DIR/pg.port" 2>/dev/null || true)" PGUSER=postgres \
            PGPASSWORD=postgres PGDATABASE=pgstac
        load_e2e
        return 0
    fi
    ensure_deps
    stop # stale processes of an interrupted run
    mkdir -p "$DIR/run"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR/run"; fi
    # postgres must be able to reach its data dir through the work tree
    if [ ! -f "$DIR/pg/PG_VERSION" ]; then
        rm -rf "$DIR/pg"
        mkdir -p "$DIR/pg"
        if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR/pg"; fi
        as_pg "$PGBIN/initdb" -D "$DIR/pg" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
            || { log "initdb failed:"; cat "$DIR/initdb.log" >&2; exit 1; }
    fi
    local pg_port api_port
    pg_port="$(free_port)"
    : >"$DIR/pg.log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR/pg.log"; fi
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w -t 60 \
        -o "-p $pg_port -k $DIR/run -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
        || { log "PostgreSQL failed:"; cat "$DIR/pg.log" >&2; exit 1; }

    echo "$pg_port" >"$DIR/pg.port"
    rm -f "$DIR/e2e.loaded"
    export PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=postgres PGPASSWORD=postgres PGDATABASE=pgstac
    "$PGBIN/psql" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'pgstac'" | grep -q 1 \
        || "$PGBIN/createdb" pgstac
    "$VENV/bin/pypgstac" migrate >"$DIR/migrate.log" 2>&1 \
        || { log "pypgstac migrate failed:"; cat "$DIR/migrate.log" >&2; exit 1; }

    # Collections: the C1 document as published, plus the older `sentinel-2-l2a` collection made
    # from it by changing the id (its items are in crates/eocube/tests/data/stac; pgstac needs the collection).
    # Items: every sentinel-2-* item there, one per line.
    "$PY" - "$DATA" "$DIR" <<'PYEOF'
import json, pathlib, sys
data, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
c1 = json.loads((data / "sentinel-2-c1-l2a_collection.json").read_text())
old = dict(c1, id="sentinel-2-l2a", title="Sentinel-2 Level-2A (older collection, test copy)")
(out / "collections.ndjson").write_text("".join(json.dumps(c) + "\n" for c in (c1, old)))
items = []
for f in sorted(data.glob("sentinel-2-*.json")):
    d = json.loads(f.read_text())
    if d.get("type") == "FeatureCollection":
        items += d["features"]
    elif d.get("type") == "Feature":
        items.append(d)
(out / "items.ndjson").write_text("".join(json.dumps(i) + "\n" for i in items))
print(f"{len(items)} items", file=sys.stderr)
PYEOF
    "$VENV/bin/pypgstac" load collections "$DIR/collections.ndjson" --method upsert >"$DIR/load.log" 2>&1 \
        && "$VENV/bin/pypgstac" load items "$DIR/items.ndjson" --method upsert >>"$DIR/load.log" 2>&1 \
        || { log "pypgstac load failed:"; cat "$DIR/load.log" >&2; exit 1; }
    load_e2e

    api_port="$(free_port)"
    # stac-fastapi-pgstac reads PG* (newer) or POSTGRES_* (older releases) settings.
    POSTGRES_USER=postgres POSTGRES_PASS=postgres POSTGRES_DBNAME=pgstac POSTGRES_HOST_READER=127.0.0.1 \
        POSTGRES_HOST_WRITER=127.0.0.1 POSTGRES_PORT="$pg_port" ENABLE_TRANSACTIONS_EXTENSIONS=false \
        nohup "$VENV/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory --host 127.0.0.1 \
        --port "$api_port" --log-level warning </dev/null >"$DIR/uvicorn.log" 2>&1 &
    echo $! >"$DIR/uvicorn.pid"
    local url="http://127.0.0.1:$api_port"
    for _ in $(seq 1 300); do
        if curl -fs -o /dev/null --max-time 2 "$url/collections"; then
            echo "export EOCUBE_TEST_STAC=$url" >"$DIR/env"
            log "ready: $url (PostgreSQL on 127.0.0.1:$pg_port)"
            return 0
        fi
        alive "$(cat "$DIR/uvicorn.pid")" || break
        sleep 0.2
    done
    log "uvicorn did not answer $url/collections:"
    cat "$DIR/uvicorn.log" >&2
    stop
    exit 1
}

status() {
    if running; then
        cat "$DIR/env"
    else
        echo "stac-server: not running" >&2
        return 1
    fi
}

case "${1:-}" in
install) ensure_deps ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac
