#!/usr/bin/env python3
"""A Berth plugin in plain Python (standard library only).

    pyplug.py --protocol v1 --storage DIR   # v1 handshake, volume hook
    pyplug.py --protocol v2 --storage DIR   # v2 handshake, volume hook + api pre-hook

Bind sources under /pyvol/ are moved to DIR (created on demand); with v2, every
`POST /containers/create` gets the label `seen-by=pyplug`. Run it in a container
with `berth plugin load` (see docs/plugins.md, "A plugin in any language").
"""

import argparse
import json
import os
import signal
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

SOCKET = "/var/run/docker/plugin.sock"
PREFIX = "/pyvol/"


def log(msg):
    # stderr, unbuffered: `berth plugin logs pyplug` shows it, even after a crash.
    print(msg, file=sys.stderr, flush=True)


def handshake_v1(_req):
    return {"Name": "pyplug", "InterestedIn": ["volume"], "Author": "docs"}


def handshake_v2(_req):
    return {
        "ProtocolVersion": 2,
        "Name": "pyplug",
        "Version": "1.0",
        "InterestedIn": ["volume", "api"],
        "Subscriptions": {
            "volume": {"Events": ["create", "start"]},
            "api": {"Pre": ["POST /containers/create"]},
        },
    }


def volume(req):
    path = req.get("HostPath", "")
    if not path.startswith(PREFIX):
        return {"HostPath": path}  # not ours: unchanged
    moved = os.path.join(ARGS.storage, path[len(PREFIX):])
    os.makedirs(moved, exist_ok=True)
    log(f"volume {path} -> {moved}")
    return {"HostPath": moved}


def api_pre(req):
    client = req["ClientRequest"]
    body = json.loads(client.get("Body") or "{}")
    body.setdefault("Labels", {})["seen-by"] = "pyplug"
    client["Body"] = json.dumps(body)
    return {"PowerstripProtocolVersion": 1, "ModifiedClientRequest": client}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine expects

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        route = ROUTES.get(self.path)
        if route is None:
            return self.reply(404, {"Err": f"pyplug does not handle {self.path}"})
        try:
            self.reply(200, route(json.loads(raw or b"{}")))
        except Exception as e:  # the engine shows the Err text, naming the plugin
            log(f"{self.path}: {e!r}")
            self.reply(500, {"Err": f"{type(e).__name__}: {e}"})

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # the default wants a TCP peer address
        log(f"{self.command} {self.path} " + fmt % args)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True  # one slow call must not block the next


def main():
    global ARGS, ROUTES
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["v1", "v2"], default="v2")
    p.add_argument("--storage", required=True)
    p.add_argument("--socket", default=SOCKET)
    ARGS = p.parse_args()
    if ARGS.protocol == "v1":
        ROUTES = {"/v1/handshake": handshake_v1, "/v1/volume/volumes": volume}
    else:
        ROUTES = {
            "/v2/handshake": handshake_v2,
            "/v2/volume/create": volume,
            "/v2/volume/start": volume,
            "/v2/api/pre-hook": api_pre,
        }
    # A socket left by a previous run would fail the bind ("Address already in use").
    try:
        os.unlink(ARGS.socket)
    except FileNotFoundError:
        pass
    server = Server(ARGS.socket, Handler)
    # As pid 1, SIGTERM has no default action: without this, every stop waits the full grace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log(f"pyplug {ARGS.protocol} serving {ARGS.socket}")
    server.serve_forever()


ARGS = None
ROUTES = {}

if __name__ == "__main__":
    main()
