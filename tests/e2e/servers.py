#!/usr/bin/env python3
# servers.py — the test world's application servers: HTTP on :80, HTTPS on :443, UDP echo on :7.
#
# Runs inside the servers namespace (see world.sh). TCP listens on the wildcard address, both
# families, so every service address answers; UDP binds each address given with --udp, so that
# replies leave from the address the client asked (a wildcard UDP socket would answer from the
# veth address instead). Every reply says where it was received, so a test knows the connection
# reached the destination it meant, with the name it meant:
#
#   GET /      -> "hello from ADDR host=HOST\n"            (HTTP)
#                 "hello from ADDR host=HOST sni=NAME\n"    (HTTPS; NAME is the ClientHello's SNI)
#   GET /big   -> the file given with --big
#   UDP "X"    -> "echo X from ADDR"
#
# Prints "ready" on stdout once every socket listens.
import argparse
import http.server
import os
import select
import shutil
import socket
import socketserver
import ssl
import sys
import threading


def plain(addr):
    return addr[7:] if addr.startswith("::ffff:") else addr


class Handler(http.server.BaseHTTPRequestHandler):
    big = None
    server_version = "sluice-world/1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path == "/big":
            size = os.path.getsize(self.big)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(self.big, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)
            return
        local = plain(self.connection.getsockname()[0])
        body = "hello from %s host=%s" % (local, self.headers.get("Host", "-"))
        if isinstance(self.connection, ssl.SSLSocket):
            body += " sni=%s" % (getattr(self.connection, "sni_name", None) or "-")
        body = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class TLSServer(Server):
    def __init__(self, addr, handler, cert, key):
        super().__init__(addr, handler)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.sni_callback = self.on_sni

    @staticmethod
    def on_sni(sslsock, name, ctx):
        sslsock.sni_name = name

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's own thread: a stalled client stalls only itself.
        request.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()


def udp_echo(socks):
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            data, peer = s.recvfrom(2048)
            s.sendto(b"echo " + data.rstrip(b"\n") + b" from " +
                     plain(s.getsockname()[0]).encode(), peer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--udp", action="append", default=[], help="ADDR to echo UDP on, port 7")
    args = ap.parse_args()
    Handler.big = args.big

    http_server = Server(("::", 80), Handler)
    tls_server = TLSServer(("::", 443), Handler, args.cert, args.key)
    socks = []
    for a in args.udp:
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, 7))
        socks.append(s)
    for target, arg in ((http_server.serve_forever, None), (tls_server.serve_forever, None),
                        (udp_echo, socks)):
        t = threading.Thread(target=target, args=() if arg is None else (arg,), daemon=True)
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
