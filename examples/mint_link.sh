#!/bin/sh
# Mint an upload link token with openssl (docs/links.md):
#   mint_link.sh SECRET APP [PREFIX] [TTL] [MAX_SIZE] [MAX_FILES]
set -e
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
exp=$(( $(date +%s) + ${4:-3600} ))
nonce=$(openssl rand 16 | b64url)
claims=$(printf '{"app":"%s","prefix":"%s","exp":%s,"max_size":%s,"max_files":%s,"nonce":"%s"}' \
    "$2" "${3:-}" "$exp" "${5:-0}" "${6:-1}" "$nonce" | b64url)
sig=$(printf '%s' "$claims" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
printf '%s.%s\n' "$claims" "$sig"
