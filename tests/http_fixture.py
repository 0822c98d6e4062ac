#!/usr/bin/env python3
"""A local HTTP server for the download tests (tests/test_download.c): it serves one generated
file, under /<mode>/<any name>, in the ways a real server can behave.

  /good/NAME      the file; a Range request (bytes=N-) gets 206 with the rest, or 416 past
                  the end
  /wrong/NAME     another file of the same size (its MD5 is not the file's)
  /missing/NAME   404
  /drop/NAME      the first request sends the headers of the whole file, --drop-after bytes,
                  then closes the connection; later requests behave as /good/
  /norange/NAME   the file, always whole with 200: Range headers are ignored
  /slow/NAME      the headers of the whole file and --drop-after bytes, then the rest a minute
                  later (long after a test has interrupted the client)

Started as `http_fixture.py --size N --drop-after N --log FILE`, it listens on a free port of
127.0.0.1 and prints one line, `PORT MD5 WRONG_MD5`, once it accepts connections (so a test
that reads that line never races the server). Every request appends `METHOD PATH RANGE` to the
log (RANGE is `-` without a Range header), so tests can check what the client asked for.
Standard library only; it runs until killed.
"""
import argparse
import hashlib
import http.server
import os
import random
import re
import socket
import sys
import time


def generated(size, seed):
    return random.Random(seed).randbytes(size)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dropped = set()  # /drop/ paths whose first request was cut short

    def log_message(self, fmt, *args):  # quiet: the log file is the record
        pass

    def record(self):
        with open(self.server.log_path, "a") as log:
            log.write("%s %s %s\n" % (self.command, self.path, self.headers.get("Range", "-")))

    def send_body(self, code, body, extra=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def cut_short(self, data, pause):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: self.server.drop_after])
        self.wfile.flush()
        if pause:
            time.sleep(60)
            self.wfile.write(data[self.server.drop_after :])
            return
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def do_GET(self):
        self.record()
        m = re.match(r"^/([a-z]+)/[^/]+$", self.path)
        mode = m.group(1) if m else "missing"
        data = self.server.wrong if mode == "wrong" else self.server.data
        if mode not in ("good", "wrong", "drop", "norange", "slow"):
            self.send_body(404, b"not here\n")
            return
        if mode == "slow" or (mode == "drop" and self.path not in Handler.dropped):
            Handler.dropped.add(self.path)
            self.cut_short(data, mode == "slow")
            return
        r = re.match(r"^bytes=(\d+)-$", self.headers.get("Range", ""))
        if r is None or mode == "norange":
            self.send_body(200, data)
            return
        start = int(r.group(1))
        if start >= len(data):
            self.send_body(416, b"range not satisfiable\n",
                           [("Content-Range", "bytes */%d" % len(data))])
            return
        self.send_body(206, data[start:],
                       [("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))])


class Server(http.server.HTTPServer):
    def handle_error(self, request, client_address):
        # A client closing a connection with a response unread (libcurl after an HTTP error)
        # resets it: expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=200000)
    p.add_argument("--drop-after", type=int, default=70000)
    p.add_argument("--log", required=True)
    a = p.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.data = generated(a.size, 1)
    server.wrong = generated(a.size, 2)
    server.drop_after = a.drop_after
    server.log_path = a.log
    open(a.log, "w").close()
    # One write of the whole line (the test reads up to its newline), then stdout is let go, so
    # that nothing is ever written into a pipe the test has closed.
    line = "%d %s %s\n" % (server.server_address[1], hashlib.md5(server.data).hexdigest(),
                           hashlib.md5(server.wrong).hexdigest())
    os.write(1, line.encode())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    server.serve_forever()


if __name__ == "__main__":
    main()
