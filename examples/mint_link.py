#!/usr/bin/env python3
"""Mint an upload link token the way ngx_http_upload_module does
(docs/links.md): base64url(claims) "." base64url(HMAC-SHA256(secret, part 1)).

    mint_link.py SECRET APP [PREFIX] [TTL] [MAX_SIZE] [MAX_FILES]
"""
import base64, hashlib, hmac, json, os, sys, time


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, app, prefix="", ttl=3600, max_size=0, max_files=1):
    claims = {"app": app, "prefix": prefix, "exp": int(time.time()) + ttl,
              "max_size": max_size, "max_files": max_files,
              "nonce": b64url(os.urandom(16))}
    part = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), part.encode(), hashlib.sha256).digest()
    return part + "." + b64url(mac)


if __name__ == "__main__":
    a = sys.argv[1:]
    print(mint(a[0], a[1], a[2] if len(a) > 2 else "",
               *(int(x) for x in a[3:6])))
