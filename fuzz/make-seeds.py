#!/usr/bin/env python3
#
# Writes the seed inputs of fuzz/corpus/<harness>/ (fuzz/README.md): a few
# valid and invalid inputs a harness, in its input format.  The tokens are
# signed with the harnesses' secrets (fuzz_link_verify.c): change both
# together.  Run it again after a change of an input format.

import base64, hashlib, hmac, json, os

F = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')

def put(h, name, data):
    d = os.path.join(F, h)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8', 'surrogateescape')
    open(os.path.join(d, name), 'wb').write(data)

# key: flags byte (location 0 "/upload/", 1 "/upload", 2 "/", 3 "/a/b";
# 4: the target without the location), then the key / name / target
put('key', 'valid-key', b'\x00photos/2024/cat.jpg')
put('key', 'valid-app-name', b'\x00my-app_1.0')
put('key', 'no-slash-location', b'\x01/a%20b/c.txt')
put('key', 'utf8-escaped', b'\x00docs/%E2%82%AC-report.pdf')
put('key', 'utf8-raw', '\x00docs/\u00e9t\u00e9.txt'.encode())
put('key', 'dotdot', b'\x00a/../b')
put('key', 'dotdot-escaped', b'\x00%2e%2E/etc/passwd')
put('key', 'overlong-slash', b'\x00a%C0%AFb')
put('key', 'surrogate', b'\x00a%ED%A0%80')
put('key', 'empty-segment', b'\x02dir//file')
put('key', 'bad-escape', b'\x00a%2')
put('key', 'nul', b'\x00a%00b')
put('key', 'raw-target-query', b'\x04/upload/x/y?uploads&z=1')
put('key', 'other-location', b'\x07/a/bc/d')
put('key', 'long-segment', b'\x03/deep/' + b'a' * 256 + b'/b')

# args: r->args
put('args', 'upload-id-part', 'uploadId=AbCdEfGhIjKlMnOpQrStUv-_&partNumber=1')
put('args', 'uploads', 'uploads')
put('args', 'twice', 'uploadId=x&uploadId=y&partNumber=2&partNumber=3')
put('args', 'part-zero', 'partNumber=0')
put('args', 'part-max', 'partNumber=10000')
put('args', 'part-over', 'partNumber=10001&meta')
put('args', 'part-leading-zero', 'partNumber=01')
put('args', 'token-meta', 'token=abc.def&meta=1')
put('args', 'listing', 'prefix=a%2Fb&max-parts=5&part-number-marker=2')
put('args', 'sha256', 'sha256=' + hashlib.sha256(b'').hexdigest())
put('args', 'empty-pieces', '&&=&uploads=&')

# digest: a header value
md5 = base64.b64encode(hashlib.md5(b'').digest()).decode()
sha = hashlib.sha256(b'').hexdigest()
put('digest', 'md5', md5)
put('digest', 'md5-trailing-space', md5 + ' \t')
put('digest', 'md5-no-padding', md5.rstrip('='))
put('digest', 'md5-garbage-after-pad', md5[:23] + '!')
put('digest', 'sha256', sha)
put('digest', 'sha256-upper', sha.upper())
put('digest', 'sha256-bad', 'g' + sha[1:])
put('digest', 'short-hex', '0a1B')

# link_verify: flags byte (1: a second secret; 2: the rest is claims, signed
# here; 4: signed with the second secret; 8: with an unknown one)
S1, S2 = b'fuzz-secret-one', b'fuzz-secret-two, rotated in'

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b'=')

def token(claims, secret):
    c = b64u(json.dumps(claims, separators=(',', ':')).encode())
    return c + b'.' + b64u(hmac.new(secret, c, hashlib.sha256).digest())

good = {"app": "photos", "prefix": "users/42/", "exp": 4102444800,
        "max_size": 10485760, "max_files": 5, "nonce": "Q2hhbmdlTWUxMjM0"}
put('link_verify', 'token-valid', b'\x00' + token(good, S1))
put('link_verify', 'token-second-secret', b'\x01' + token(good, S2))
put('link_verify', 'token-unknown-secret', b'\x01' + token(good, b'x'))
put('link_verify', 'token-expired',
    b'\x00' + token(dict(good, exp=1600000000), S1))
put('link_verify', 'token-garbage', b'\x00abc.def')
put('link_verify', 'claims-valid',
    b'\x02' + json.dumps(good).encode())
put('link_verify', 'claims-second-secret',
    b'\x07' + json.dumps(good).encode())
put('link_verify', 'claims-unknown-secret',
    b'\x0a' + json.dumps(good).encode())
put('link_verify', 'claims-bad-nonce',
    b'\x02' + json.dumps(dict(good, nonce="short!")).encode())
put('link_verify', 'claims-bad-app',
    b'\x02' + json.dumps(dict(good, app=".tmp")).encode())
put('link_verify', 'claims-types',
    b'\x02{"app":1,"prefix":null,"exp":"x","max_size":-1,"max_files":0}')

# link_roundtrip: the bytes as fuzz_link_roundtrip.c reads them
APP = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.'
NONCE = APP[:-1]

def roundtrip(secrets, signer, app, prefix, nonce, exp, max_size, max_files,
              mask=0x20):
    b = bytes([len(secrets) - 1])
    if len(secrets) == 2:
        b += bytes([signer])
    for s in secrets:
        b += bytes([len(s) - 1]) + s
    b += bytes([len(app) - 1]) + bytes(APP.index(c) for c in app)
    b += len(prefix).to_bytes(2, 'big') + prefix
    b += bytes([len(nonce) - 8]) + bytes(NONCE.index(c) for c in nonce)
    b += (exp - 1700000001).to_bytes(5, 'big')
    b += max_size.to_bytes(7, 'big')
    b += (max_files - 1).to_bytes(3, 'big')
    return b + bytes([mask, 0])

put('link_roundtrip', 'minimal',
    roundtrip([b'k'], 0, 'a', b'', 'abcdefgh', 1700000100, 0, 1))
put('link_roundtrip', 'two-secrets',
    roundtrip([b'old secret', b'new secret'], 1, 'photos', b'users/42/',
              'Q2hhbmdlTWUxMjM0', 4102444800, 10485760, 5))
put('link_roundtrip', 'utf8-prefix',
    roundtrip([b's' * 64], 0, 'my.app_2', 'users/\u00e9t\u00e9/'.encode() * 40,
              'n' * 64, 100000000000, 1000000000000000, 1000000, 0x01))
put('link_roundtrip', 'quotes-prefix',
    roundtrip([b'\x00\xff'], 0, 'q', b'"/' * 500, 'a-b_c-d_', 1800000000,
              123, 2, 0x80))

# link_mint: the JSON body of POST <location>links
put('link_mint', 'minimal', '{"appid":"photos"}')
put('link_mint', 'full', json.dumps({"appid": "photos", "prefix": "users/42/",
    "ttl": 3600, "max_size": 10485760, "max_files": 5}))
put('link_mint', 'bad-app', '{"appid":".hidden"}')
put('link_mint', 'bad-ttl', '{"appid":"photos","ttl":0}')
put('link_mint', 'fractions', '{"appid":"photos","max_files":1.5,'
    '"max_size":2.5,"ttl":59.9}')
put('link_mint', 'too-large', '{"appid":"photos","max_size":1e16}')
put('link_mint', 'control-prefix', '{"appid":"a","prefix":"\\u0001\\u0002"}')
put('link_mint', 'not-object', '["photos"]')
put('link_mint', 'types', '{"appid":"a","prefix":1,"ttl":"1"}')

# app: the body of POST <registration location>, JSON or a form
put('app', 'json-full', json.dumps({"appid": "photos",
    "callback_url_pre": "https://app.example.com/pre",
    "callback_url_post": "http://10.0.0.1:8080/post?x=1",
    "secret": "s3cret"}))
put('app', 'json-leading-space', '  \r\n{"appid":"x"}')
put('app', 'json-links', '{"appid":"links"}')
put('app', 'json-types', '{"appid":null,"secret":5}')
put('app', 'json-userinfo', '{"appid":"x",'
    '"callback_url_pre":"https://user@evil.example/"}')
put('app', 'json-nul', '{"appid":"ph\\u0000otos"}')
put('app', 'json-bad', '{"appid":')
put('app', 'form-full', 'appid=photos&callback_url_post='
    'https%3A%2F%2Fapp.example.com%2Fpost&secret=a+b%2B')
put('app', 'form-twice', 'appid=a&appid=b')
put('app', 'form-nul', 'appid=ph%00otos')
put('app', 'form-bad-escape', 'appid=%zz&secret=%')
put('app', 'url-only', 'https://app.example.com:8443/cb?x=1')

# initiate: the JSON body of POST <key>?uploads
put('initiate', 'empty', '')
put('initiate', 'spaces', ' \n')
put('initiate', 'full', json.dumps({"size": 10485760, "part_size": 5242880,
    "name": "movie.mp4", "content_type": "video/mp4", "sha256": sha,
    "metadata": {"owner": "42", "tags": ["a", "b"]}}))
put('initiate', 'size-negative', '{"size":-1}')
put('initiate', 'size-fraction', '{"size":1.5}')
put('initiate', 'size-2p53', '{"size":9007199254740993}')
put('initiate', 'size-too-many-parts', '{"size":53687091200001}')
put('initiate', 'part-size-zero', '{"part_size":0}')
put('initiate', 'sha256-bad', '{"sha256":"XYZ"}')
put('initiate', 'metadata-array', '{"metadata":[1,2]}')
put('initiate', 'name-number', '{"name":123}')
put('initiate', 'not-object', '[1]')

# complete: the JSON body of POST <key>?uploadId=<id>
put('complete', 'two-parts', json.dumps({"parts": [
    {"part_number": 1, "etag": '"0CC175B9C0F1B6A831C399E269772661"'},
    {"part_number": 2, "etag": "92eb5ffee6ae2fec3ad71c777531578f"}]}))
put('complete', 'empty-list', '{"parts":[]}')
put('complete', 'descending', '{"parts":[{"part_number":2,"etag":"a"},'
    '{"part_number":1,"etag":"b"}]}')
put('complete', 'twice', '{"parts":[{"part_number":1,"etag":"a"},'
    '{"part_number":1,"etag":"a"}]}')
put('complete', 'fraction', '{"parts":[{"part_number":1.5,"etag":"a"}]}')
put('complete', 'beyond-max', '{"parts":[{"part_number":10001,"etag":"a"}]}')
put('complete', 'one-quote', '{"parts":[{"part_number":1,"etag":"\\""}]}')
put('complete', 'parts-object', '{"parts":{"part_number":1}}')
put('complete', 'nested', '{"parts":[[{"part_number":1,"etag":"a"}]]}')
