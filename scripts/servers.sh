#!/usr/bin/env bash
# Start / stop the real servers the tests read through:
#   nginx (Debian's, HTTP with Range support) serving $EOCUBE_FIXTURES on 127.0.0.1:<free port>
#   moto_server (S3-compatible) on 127.0.0.1:<free port>, bucket eocube-fixtures = fixtures dir
#   Azurite (Microsoft's Azure Blob emulator, npm, under .tools/) on 127.0.0.1:<free port>
# Usage: scripts/servers.sh start|stop|status
# State lives in $EOCUBE_SERVERS_DIR (default target/eocube-servers): nginx.conf, pid files,
# logs (access.log has one line per request) and `env`, to be sourced by the test runner.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${EOCUBE_SERVERS_DIR:-$ROOT/target/eocube-servers}"
FIXTURES="${EOCUBE_FIXTURES:-$ROOT/target/eocube-fixtures}"
PY="$ROOT/.venv/bin/python"
BUCKET=eocube-fixtures

log() { echo "servers: $*" >&2; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

stop() {
    stop_pid nginx "$DIR/nginx.pid"
    stop_pid moto "$DIR/moto.pid"
    stop_pid azurite "$DIR/azurite.pid"
    rm -f "$DIR/env"
}

start() {
    [ -f "$FIXTURES/manifest.json" ] || { log "no fixtures in $FIXTURES (run scripts/fixtures.py)"; exit 1; }
    [ -x "$PY" ] || { log "no .venv (run scripts/setup.sh)"; exit 1; }
    FIXTURES="$(cd "$FIXTURES" && pwd)"
    stop # stale servers from an interrupted run
    mkdir -p "$DIR/tmp"
    : >"$DIR/access.log"

    # --- nginx ---
    local nginx http_port user_line=""
    nginx="$(command -v nginx || echo /usr/sbin/nginx)"
    http_port="$(free_port)"
    # as root, nginx workers would switch to www-data, which may not read the work tree
    if [ "$(id -u)" -eq 0 ]; then user_line="user root;"; fi
    sed -e "s|@DIR@|$DIR|g" -e "s|@ROOT@|$FIXTURES|g" -e "s|@PORT@|$http_port|g" \
        -e "s|@USER_LINE@|$user_line|" "$ROOT/scripts/nginx.conf.in" >"$DIR/nginx.conf"
    "$nginx" -p "$DIR" -e "$DIR/nginx-error.log" -c "$DIR/nginx.conf" </dev/null \
        || { log "nginx failed:"; cat "$DIR/nginx-error.log" >&2; exit 1; }

    # --- moto ---
    local s3_port
    s3_port="$(free_port)"
    nohup "$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" \
        >"$DIR/moto.log" 2>&1 </dev/null &
    echo $! >"$DIR/moto.pid"

    # --- Azurite (tests/cloud.rs: az:// outputs); data in a fresh directory each start ---
    local az_port azurite="$ROOT/.tools/node_modules/.bin/azurite-blob"
    [ -x "$azurite" ] || { log "no Azurite in .tools (run scripts/setup.sh)"; exit 1; }
    az_port="$(free_port)"
    rm -rf "$DIR/azurite" && mkdir -p "$DIR/azurite"
    nohup "$azurite" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$DIR/azurite" \
        --skipApiVersionCheck --silent >"$DIR/azurite.log" 2>&1 </dev/null &
    echo $! >"$DIR/azurite.pid"

    # --- wait for all of them, create the bucket, upload the fixtures ---
    EOCUBE_FIXTURES="$FIXTURES" HTTP="http://127.0.0.1:$http_port" S3="http://127.0.0.1:$s3_port" \
    BUCKET="$BUCKET" MOTO_PID="$(cat "$DIR/moto.pid")" \
    AZ="http://127.0.0.1:$az_port" AZ_PID="$(cat "$DIR/azurite.pid")" "$PY" - <<'PYEOF'
import os, sys, time, urllib.request, urllib.error
from pathlib import Path

def wait(url, what, pid=None):
    t0 = time.time()
    while time.time() - t0 < 60:
        if pid and not os.path.exists(f"/proc/{pid}"):
            sys.exit(f"servers: {what} exited; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            time.sleep(0.1)
    sys.exit(f"servers: {what} did not answer at {url} within 60 s")

wait(os.environ["HTTP"] + "/manifest.json", "nginx")
wait(os.environ["S3"] + "/", "moto", os.environ["MOTO_PID"])
wait(os.environ["AZ"] + "/devstoreaccount1?comp=list", "azurite", os.environ["AZ_PID"])

import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3"], aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
bucket = os.environ["BUCKET"]
s3.create_bucket(Bucket=bucket)
root = Path(os.environ["EOCUBE_FIXTURES"])
n = size = 0
t0 = time.time()
for p in sorted(root.rglob("*")):
    if p.is_file():
        key = p.relative_to(root).as_posix()
        s3.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())
        n += 1
        size += p.stat().st_size
r = s3.get_object(Bucket=bucket, Key="manifest.json", Range="bytes=0-15")
assert r["ResponseMetadata"]["HTTPStatusCode"] == 206 and len(r["Body"].read()) == 16, r
print(f"servers: uploaded {n} files ({size / 1e6:.1f} MB) to s3://{bucket} in {time.time() - t0:.1f} s",
      file=sys.stderr)
PYEOF

    cat >"$DIR/env" <<EOF
export EOCUBE_FIXTURES="$FIXTURES"
export EOCUBE_TEST_HTTP="http://127.0.0.1:$http_port"
export EOCUBE_TEST_HTTP_LOG="$DIR/access.log"
export EOCUBE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export EOCUBE_TEST_S3_BUCKET="$BUCKET"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ALLOW_HTTP=true
export EOCUBE_TEST_AZURITE="http://127.0.0.1:$az_port"
EOF
    log "nginx on http://127.0.0.1:$http_port (pid $(cat "$DIR/nginx.pid")), moto on http://127.0.0.1:$s3_port (pid $(cat "$DIR/moto.pid")), azurite on http://127.0.0.1:$az_port (pid $(cat "$DIR/azurite.pid")); env in $DIR/env"
}

status() {
    local ok=0
    for n in nginx moto azurite; do
        if alive "$(cat "$DIR/$n.pid" 2>/dev/null || true)"; then
            echo "$n running (pid $(cat "$DIR/$n.pid"))"
        else
            echo "$n not running"; ok=1
        fi
    done
    [ -f "$DIR/env" ] && cat "$DIR/env"
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
