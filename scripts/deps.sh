#!/usr/bin/env bash
# Installs the Debian 12 packages that building, running and testing the module
# need, and does nothing (no network) when they are all there already.
#
#   scripts/deps.sh             build, run, test (make deps)
#   scripts/deps.sh fuzz        and the fuzzers' compiler (make fuzz)
#   scripts/deps.sh bench       and the benchmarks' load tools (make bench)
set -euo pipefail

packages=(
    build-essential nginx-dev nginx libhiredis-dev libcjson-dev libssl-dev
    redis-server curl perl libtest-base-perl libtext-diff-perl
    libipc-run-perl liburi-perl libwww-perl liblist-moreutils-perl
    libtest-longstring-perl valgrind nghttp2-client openssl python3
)

for group in "$@"; do
    case $group in
    # libFuzzer and the sanitizers' runtimes; llvm-14 has llvm-symbolizer
    fuzz)  packages+=(clang-14 libclang-rt-14-dev llvm-14) ;;
    # node and npm for the tus baseline, unless a node is there already
    bench) packages+=(wrk)
           command -v node >/dev/null && command -v npm >/dev/null \
               || packages+=(nodejs npm) ;;
    *)     echo "deps: unknown group \"$group\" (fuzz, bench)" >&2
           exit 2 ;;
    esac
done

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=()
for p in "${packages[@]}"; do
    case $p in
    # nginx-core (or nginx-full, ...) also provides /usr/sbin/nginx.
    nginx) installed nginx || installed nginx-core || missing+=("$p") ;;
    *)     installed "$p" || missing+=("$p") ;;
    esac
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

install=(apt-get install -y --no-install-recommends "${missing[@]}")

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: run as root:" >&2
    echo "    apt-get update" >&2
    echo "    DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"

# Package scripts must not start the system nginx and redis-server (ports 80
# and 6379): a policy-rc.d that answers 101 forbids it during the install.
# One already there (Docker images ship one) is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

apt-get update
DEBIAN_FRONTEND=noninteractive "${install[@]}"
