"""A local AWS Lambda for the tests: cargo-lambda's emulator of the Lambda APIs, N instances of
the real eocube binary running as function `eocube` under its Runtime API, and a counting proxy
in front of the Invoke API that can also answer like Lambda under load.

Usage: lambda_env.py EOCUBE_BIN INSTANCES STATE_FILE [--throttle-every K --throttle N]
                     [--function-errors N] [--function-errors-after M]
Writes {"invoke": "http://127.0.0.1:PORT"} into STATE_FILE once everything answers. Runs until
its stdin closes (the test process ended), then stops everything it started.

Why instances are started here and not by `cargo lambda watch`: the emulator's own function
start is `cargo run`, which would wait for the build lock `cargo test` holds. With
`--only-lambda-apis` it serves the same Runtime API to processes started by someone else.

The proxy (GET /stats for its counts):
- counts invocations in flight (the most at once is the concurrency bound seen by Lambda) and
  invocations per task index;
- `--throttle-every K --throttle N`: every K-th invocation, N in all, is answered 429
  TooManyRequestsException without reaching the function (Lambda's throttling answer);
- `--function-errors N`: N invocations after the first M are answered 200 with
  `X-Amz-Function-Error: Unhandled` (what Lambda says of a crashed or timed-out function);
- `--noop`: every invocation is answered at once with a permanent "no-op" outcome per task and
  no function runs: what is left is the invoker's own rate (scripts/bench-lambda.sh).
"""
import argparse
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("eocube")
ap.add_argument("instances", type=int)
ap.add_argument("state")
ap.add_argument("--throttle-every", type=int, default=0)
ap.add_argument("--throttle", type=int, default=0)
ap.add_argument("--function-errors", type=int, default=0)
ap.add_argument("--function-errors-after", type=int, default=3)
ap.add_argument("--noop", action="store_true", help="answer every task at once, no function runs (spawn-rate benchmark)")
opts = ap.parse_args()

children = []
lock = threading.Lock()
stats = {"invocations": 0, "in_flight": 0, "max_in_flight": 0, "throttled": 0, "function_errors": 0, "per_task": {}}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_all(*_):
    for c in children:
        try:
            c.kill()
        except OSError:
            pass
    os._exit(0)


emu_port = free_port()
log_dir = os.path.dirname(os.path.abspath(opts.state))
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
env = dict(os.environ, PATH=os.path.join(root, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
emu_log = open(os.path.join(log_dir, "emulator.log"), "wb")
children.append(
    subprocess.Popen(
        ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(emu_port)],
        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=emu_log, stderr=subprocess.STDOUT,
    )
)
t0 = time.time()
while True:
    try:
        socket.create_connection(("127.0.0.1", emu_port), timeout=0.5).close()
        break
    except OSError:
        if time.time() - t0 > 60 or children[0].poll() is not None:
            sys.stderr.write("lambda_env: the emulator did not start; see %s\n" % emu_log.name)
            stop_all()
        time.sleep(0.1)

fn_env = dict(
    os.environ,
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:%d/.rt/eocube" % emu_port,
    AWS_LAMBDA_FUNCTION_NAME="eocube",
    AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE="2048",
)
for i in range(opts.instances):
    log = open(os.path.join(log_dir, "function-%d.log" % i), "wb")
    fn_env_i = dict(fn_env, AWS_LAMBDA_LOG_STREAM_NAME="local/instance-%d" % i)
    children.append(subprocess.Popen([opts.eocube], env=fn_env_i, stdin=subprocess.DEVNULL, stdout=log, stderr=log))


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            body = json.dumps(stats).encode()
        self.reply(200, body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            tasks = json.loads(body).get("tasks", [])
        except (ValueError, AttributeError):
            tasks = []
        with lock:
            stats["invocations"] += 1
            n = stats["invocations"]
            for t in tasks:
                stats["per_task"][str(t)] = stats["per_task"].get(str(t), 0) + 1
            throttle = opts.throttle_every and n % opts.throttle_every == 0 and stats["throttled"] < opts.throttle
            crash = not throttle and n > opts.function_errors_after and stats["function_errors"] < opts.function_errors
            if throttle:
                stats["throttled"] += 1
            elif crash:
                stats["function_errors"] += 1
            else:
                stats["in_flight"] += 1
                stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        if opts.noop:
            with lock:
                stats["in_flight"] -= 1
            answer = {"tasks": [{"index": t, "exit": "permanent", "error": "no-op benchmark answer"} for t in tasks]}
            return self.reply(200, json.dumps(answer).encode())
        if throttle:
            msg = json.dumps({"Type": "User", "message": "Rate Exceeded.", "Reason": "ConcurrentInvocationLimitExceeded"})
            return self.reply(429, msg.encode(), [("x-amzn-ErrorType", "TooManyRequestsException")])
        if crash:
            msg = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": "injected: the function crashed"})
            return self.reply(200, msg.encode(), [("X-Amz-Function-Error", "Unhandled")])
        try:
            conn = http.client.HTTPConnection("127.0.0.1", emu_port, timeout=900)
            conn.request("POST", self.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower().startswith("x-amz")]
            self.reply(resp.status, data, headers)
        finally:
            with lock:
                stats["in_flight"] -= 1


http.server.ThreadingHTTPServer.request_queue_size = 1024
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
threading.Thread(target=server.serve_forever, daemon=True).start()
with open(opts.state + ".tmp", "w") as f:
    json.dump({"invoke": "http://127.0.0.1:%d" % server.server_address[1]}, f)
os.replace(opts.state + ".tmp", opts.state)
# Until the test process goes away.
try:
    sys.stdin.read()
finally:
    stop_all()
