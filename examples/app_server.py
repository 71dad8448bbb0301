#!/usr/bin/env python3
"""A small app server for ngx_http_upload_module: the whole cross-app flow.

1. It registers itself as an app (POST <nginx>/apps/) with a post-upload
   callback URL that points back at it and a secret (docs/callbacks.md).
2. It mints an upload link (POST <nginx>/apps/links) and prints it:
       LINK  <the page to open in a browser>
       TOKEN <the token, for "Authorization: Bearer" uploads>
3. nginx POSTs to /callback once a file is stored. The app checks the
   signature and the timestamp, answers at once, and in the background
   fetches the file from <nginx><url> and converts it: a UTF-8 text file
   to <out>/<key>.upper.txt in upper case, and anything to <out>/<key>.gz
   (the key with "/" replaced by "_").

Python 3 standard library only. Logs go to stderr.

    python3 examples/app_server.py [--nginx http://127.0.0.1:8080]
        [--listen 127.0.0.1:8090] [--appid converter] [--secret S]
        [--out ./converted] [--prefix inbox/] [--max-files 5] [--once]
"""
import argparse
import gzip
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_AGE = 300                   # seconds a callback's timestamp may be off
MAX_CALLBACK = 1 << 20          # the largest callback body read
MAX_TEXT = 16 << 20             # larger files get no .upper.txt


def log(*words):
    print(time.strftime("%H:%M:%S"), "app:", *words, file=sys.stderr,
          flush=True)


def post_json(url, obj):
    """POST obj as JSON; return (status, parsed answer)."""
    req = urllib.request.Request(url, data=json.dumps(obj).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def verify(secret, headers, body):
    """The check of docs/callbacks.md: HMAC-SHA256(secret, ts "." body),
    compared in constant time, and a timestamp within MAX_AGE seconds."""
    ts = headers.get("X-Upload-Timestamp", "")
    sig = headers.get("X-Upload-Signature", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_AGE:
        return False
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(sig, "sha256=" + mac.hexdigest())


def out_name(key):
    """A file name for a key: "/" becomes "_", and it cannot start with "."
    (so that it stays a plain file in the output directory)."""
    name = key.replace("/", "_").replace("\\", "_")
    return "_" + name if name.startswith(".") else name


class App:
    def __init__(self, args):
        self.args = args
        self.done = {}                  # (sha256, key) -> the answer given
        self.lock = threading.Lock()
        self.server = None
        self.failed = False

    # -- start-up: register, mint a link ---------------------------------

    def register(self):
        url = self.args.nginx + "/apps/"
        status, answer = post_json(url, {
            "appid": self.args.appid,
            "callback_url_post": "http://%s/callback" % self.args.listen,
            "secret": self.args.secret})
        if status != 201:
            sys.exit("app: registering at %s: %s %s" % (url, status, answer))
        log("registered app", self.args.appid, "callback",
            "http://%s/callback" % self.args.listen)

    def mint_link(self):
        status, answer = post_json(self.args.nginx + "/apps/links", {
            "appid": self.args.appid, "prefix": self.args.prefix,
            "ttl": 3600, "max_size": 0, "max_files": self.args.max_files})
        if status != 201:
            sys.exit("app: minting a link: %s %s" % (status, answer))
        log("minted a link for", self.args.prefix, "expiring",
            time.ctime(answer["expires"]))
        # the two lines a script (or t/180-example.t) reads
        print("LINK", self.args.nginx + answer["url"])
        print("TOKEN", answer["token"], flush=True)

    # -- the callback ----------------------------------------------------

    def callback(self, headers, body):
        """Returns (status, answer); a job to run after answering, or None."""
        if not verify(self.args.secret, headers, body):
            log("refused a callback: bad or missing signature, or stale")
            return 401, {"error": "bad signature or timestamp"}, None
        try:
            event = json.loads(body)
            sha, key, url = event["sha256"], event["key"], event["url"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "not a post callback"}, None
        if event.get("event") != "post" or event.get("appid") != self.args.appid:
            return 400, {"error": "not a post callback for this app"}, None
        log("callback: %s (%s bytes, sha256 %s...)" % (key, event.get("size"),
                                                         sha[:12]))
        name = out_name(key)
        answer = {"accepted": True, "key": key,
                  "will_write": [name + ".upper.txt", name + ".gz"],
                  "note": "the .upper.txt only if the file is UTF-8 text"}
        with self.lock:
            if (sha, key) in self.done:     # the same object again
                log("callback: %s seen already, nothing to do" % key)
                return 200, self.done[(sha, key)], None
            self.done[(sha, key)] = answer
        return 200, answer, lambda: self.convert(key, sha, url, name)

    # -- in the background: fetch and convert ----------------------------

    def convert(self, key, sha, url, name):
        try:
            self.fetch_and_convert(key, sha, url, name)
        except Exception as e:          # an example: log, and go on
            log("converting %s failed: %s" % (key, e))
            self.failed = True
        if self.args.once:
            log("--once: stopping")
            self.server.shutdown()

    def fetch_and_convert(self, key, sha, url, name):
        if not url.startswith("/"):
            raise ValueError("unexpected url %r" % url)
        out = self.args.out
        os.makedirs(out, exist_ok=True)
        # the file, from the storage address, into a temporary file
        with tempfile.TemporaryFile(dir=out) as tmp:
            log("fetching", self.args.nginx + url)
            digest = hashlib.sha256()
            with urllib.request.urlopen(self.args.nginx + url,
                                        timeout=30) as resp:
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
                    tmp.write(chunk)
            if digest.hexdigest() != sha:
                raise ValueError("the file fetched is not the one announced")
            size = tmp.tell()
            log("fetched %s: %d bytes, sha256 verified" % (key, size))

            # anything: a gzip copy
            tmp.seek(0)
            with AtomicFile(os.path.join(out, name + ".gz")) as f:
                with gzip.GzipFile(fileobj=f, mode="wb",
                                   filename=os.path.basename(key)) as gz:
                    shutil.copyfileobj(tmp, gz)
            log("wrote", os.path.join(out, name + ".gz"))

            # UTF-8 text: an upper-case copy
            tmp.seek(0)
            try:
                text = tmp.read().decode("utf-8") if size <= MAX_TEXT else None
            except UnicodeDecodeError:
                text = None
            if text is None:
                log("%s is not UTF-8 text (or too big): no .upper.txt" % key)
                return
            with AtomicFile(os.path.join(out, name + ".upper.txt")) as f:
                f.write(text.upper().encode("utf-8"))
            log("wrote", os.path.join(out, name + ".upper.txt"))


class AtomicFile:
    """A file written as path.tmp and renamed to path once complete."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.f = open(self.path + ".tmp", "wb")
        return self.f

    def __exit__(self, exc, *rest):
        self.f.close()
        if exc is None:
            os.replace(self.path + ".tmp", self.path)
        else:
            os.unlink(self.path + ".tmp")


class Handler(BaseHTTPRequestHandler):
    app = None                          # set in main()

    def do_POST(self):
        if self.path != "/callback":
            return self.answer(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_CALLBACK:
            return self.answer(413, {"error": "too large"})
        body = self.rfile.read(length)
        status, answer, job = self.app.callback(self.headers, body)
        self.answer(status, answer)
        # only now: with --once, the job may stop the server when done
        if job:
            threading.Thread(target=job, daemon=True).start()

    def answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def log_message(self, fmt, *args):  # to stderr, as the other logs
        log("http:", fmt % args)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nginx", default="http://127.0.0.1:8080",
                   help="the base URL of nginx (default %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:8090",
                   help="host:port this app listens on (default %(default)s)")
    p.add_argument("--appid", default="converter")
    p.add_argument("--secret", default=None,
                   help="the callbacks' secret (default: a random one)")
    p.add_argument("--out", default="./converted",
                   help="where converted files go (default %(default)s)")
    p.add_argument("--prefix", default="inbox/",
                   help="the key prefix the link allows (default %(default)s)")
    p.add_argument("--max-files", type=int, default=5)
    p.add_argument("--once", action="store_true",
                   help="exit once the first callback's files are written")
    args = p.parse_args()
    args.nginx = args.nginx.rstrip("/")
    args.secret = args.secret or secrets.token_hex(16)

    app = App(args)
    host, port = args.listen.rsplit(":", 1)
    # listen first, so that no callback can come before we do
    try:
        app.server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError as e:
        sys.exit("app: cannot listen on %s: %s" % (args.listen, e))
    Handler.app = app
    try:
        app.register()
        app.mint_link()
    except urllib.error.URLError as e:
        sys.exit("app: cannot reach nginx at %s (is `make run` running?): %s"
                 % (args.nginx, e.reason))
    log("listening on", args.listen, "writing to", os.path.abspath(args.out))
    try:
        app.server.serve_forever()
    except KeyboardInterrupt:
        pass
    app.server.server_close()
    sys.exit(1 if app.failed else 0)


if __name__ == "__main__":
    main()
