#!/usr/bin/env python3
"""A tiny demo app for local runs: shows the identity headers the orchestrator sends.

    python3 scripts/dev-upstream.py [port]   # default 8081, loopback only
"""
import html
import http.server
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in self.headers.items()
        )
        body = (
            "<!doctype html><title>demo app</title><h1>demo app behind the orchestrator</h1>"
            f"<p>{html.escape(self.command)} {html.escape(self.path)}</p>"
            f"<table border=1>{rows}</table>"
            '<p><a href="/.orchestrator/logout">log out</a></p>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
