"""hello: the web server every Python cell builds and probes (standard library only)."""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"hello from basebench\n"


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet, like the Go server: one log line per probe request is noise."""


if __name__ == "__main__":
    ThreadingHTTPServer(("", 8080), Hello).serve_forever()
