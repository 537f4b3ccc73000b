"""A fault-injecting HTTP proxy for the tests: forwards every request to an upstream server and
answers `503 Slow Down` instead to the first N requests whose method and path match.

Usage: fault_proxy.py UPSTREAM METHOD PATH_REGEX N PORT_FILE
Writes the port it listens on (127.0.0.1) into PORT_FILE, then serves until killed; each fault
served is one line `fault METHOD PATH` on stdout (flushed), so a test can count them.
"""
import http.client
import http.server
import re
import sys
import threading
import urllib.parse

upstream = urllib.parse.urlsplit(sys.argv[1])
method, pattern, budget = sys.argv[2], re.compile(sys.argv[3]), int(sys.argv[4])
port_file = sys.argv[5]
lock = threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        global budget
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = False
        if self.command == method and pattern.search(self.path):
            with lock:
                if budget > 0:
                    budget -= 1
                    fault = True
        if fault:
            msg = b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            print(f"fault {self.command} {self.path}", flush=True)
            return
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
