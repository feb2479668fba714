"""A local HTTP server standing in for Twilio's Messages API (the real HTTP client talks to it)."""

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSmsApi:
    """Records every request; `fail_next` makes the next N requests answer HTTP 500."""

    def __init__(self):
        self.requests = []
        self.fail_next = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                auth = self.headers.get("Authorization", "")
                user = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth.startswith("Basic ") else ""
                api.requests.append({"path": self.path, "auth": user,
                                     "form": {k: v[0] for k, v in form.items()}})
                if api.fail_next > 0:
                    api.fail_next -= 1
                    self._reply(500, {"code": 20500, "message": "Internal Server Error", "status": 500})
                    return
                self._reply(201, {"sid": f"SM{len(api.requests):032d}", "status": "queued"})

            def _reply(self, code, payload):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
