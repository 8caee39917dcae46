#!/usr/bin/python3
"""fault_proxy: a small HTTP proxy on loopback in front of a test registry that misbehaves
on purpose, for kiln's registry tests (Debian's /usr/bin/python3 only).

  --fail-429 N         the first N requests get 429 Too Many Requests with Retry-After
  --retry-after S      the Retry-After value (seconds, default 1)
  --redirect-blobs     blob GETs get a 307 to a second port ("blob storage", another origin),
                       which serves the blob from the registry (with the credentials of the
                       redirected request, kept under a one-time "signature" in the URL, as
                       signed storage URLs work); a request arriving there with an
                       Authorization header is refused (403) and counted as a leak
  --stall-blobs N      the first N blob GETs send the headers and --stall-after bytes of the
                       body, then nothing (the connection stays open) for --stall-seconds
  --ignore-range       forward blob GETs without their Range header (the registry answers 200)
Writes "PORT BLOBPORT" to --port-file once listening. GET /_fault/stats answers the counters
as JSON. Everything else is forwarded to --upstream (host:port, plain HTTP) as is.
"""
import argparse
import http.client
import http.server
import json
import os
import re
import threading
import time

BLOB_PATH = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--fail-429", type=int, default=0)
    p.add_argument("--retry-after", default="1")
    p.add_argument("--redirect-blobs", action="store_true")
    p.add_argument("--stall-blobs", type=int, default=0)
    p.add_argument("--stall-after", type=int, default=100)
    p.add_argument("--stall-seconds", type=float, default=60)
    p.add_argument("--ignore-range", action="store_true")
    args = p.parse_args()

    lock = threading.Lock()
    stats = {"requests": 0, "served_429": 0, "redirects": 0, "stalls": 0, "range_requests": 0,
             "storage_requests": 0, "auth_leaks": 0}
    budget = {"429": args.fail_429, "stall": args.stall_blobs}
    ports = {}
    signatures = {}  # one-time storage URL signature -> the Authorization of the redirected request

    def take(name):
        with lock:
            if budget[name] > 0:
                budget[name] -= 1
                return True
            return False

    def count(name):
        with lock:
            stats[name] += 1

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, fmt, *a):
            pass

        def send_simple(self, code, body, extra=()):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def forward(self, path, drop=(), auth=None):
            conn = http.client.HTTPConnection(args.upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "host" and k.lower() not in drop}
            if auth:
                headers["Authorization"] = auth
            conn.request(self.command, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return resp, body

        def relay(self, resp, body, stall=False):
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if stall and resp.status in (200, 206) and len(body) > args.stall_after:
                count("stalls")
                self.wfile.write(body[:args.stall_after])
                self.wfile.flush()
                time.sleep(args.stall_seconds)
                return
            self.wfile.write(body)

        def blob(self, path, auth=None):
            if self.headers.get("Range"):
                count("range_requests")
            drop = ("range",) if args.ignore_range else ()
            resp, body = self.forward(path, drop, auth)
            self.relay(resp, body, stall=take("stall"))

        def do_GET(self):
            server_port = self.server.server_address[1]
            if server_port == ports.get("storage"):
                return self.storage()
            if self.path == "/_fault/stats":
                with lock:
                    return self.send_simple(200, json.dumps(stats))
            count("requests")
            if take("429"):
                count("served_429")
                return self.send_simple(429, "slow down", [("Retry-After", args.retry_after)])
            m = BLOB_PATH.match(self.path)
            if m and args.redirect_blobs and self.command == "GET":
                count("redirects")
                signature = os.urandom(8).hex()
                with lock:
                    signatures[signature] = self.headers.get("Authorization")
                location = "http://127.0.0.1:%d/storage/%s/%s?signature=%s" % (ports["storage"], m.group(1),
                                                                           m.group(2), signature)
                return self.send_simple(307, "", [("Location", location)])
            if m and self.command == "GET":
                return self.blob(self.path)
            resp, body = self.forward(self.path)
            self.relay(resp, body)

        do_HEAD = do_GET

        def storage(self):
            count("storage_requests")
            if self.headers.get("Authorization"):
                count("auth_leaks")
                return self.send_simple(403, "the registry's Authorization header reached blob storage")
            m = re.match(r"^/storage/(.+)/(sha256:[0-9a-f]{64})\?signature=([0-9a-f]+)$", self.path)
            with lock:
                known = m and m.group(3) in signatures
                auth = signatures.get(m.group(3)) if known else None
            if not known:
                return self.send_simple(404, "no such object")
            self.blob("/v2/%s/blobs/%s" % (m.group(1), m.group(2)), auth)

    def serve(server):
        server.daemon_threads = True
        server.serve_forever()

    front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ports["front"], ports["storage"] = front.server_address[1], storage.server_address[1]
    threading.Thread(target=serve, args=(storage,), daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d" % (ports["front"], ports["storage"]))
    os.rename(tmp, args.port_file)
    serve(front)


if __name__ == "__main__":
    main()
