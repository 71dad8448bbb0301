#!/usr/bin/env bash
# Instant-upload hits per second, against a `return 200` location of the
# same nginx, with the same wrk settings, in one run (docs/performance.md,
# "Instant upload").
#
# A hit is what a client that announces a stored content's SHA-256 gets:
#     PUT /hit/k<n>  X-Upload-Sha256: <sha256 of the stored body>
# with the body (BODY_BYTES) sent along, as a client without
# "Expect: 100-continue" does: the module answers 200 exists, links the
# stored content to the key and drops the body.  The baseline gets the
# very same requests: PUT /ok/k<n>, answered by `return 200` (nginx drops
# the body too).  Keys cycle over KEYS names, so that most hits replace
# an earlier key, as re-uploads do.
#
# Settings (environment): ROUNDS (3), DURATION (10s), CONNECTIONS (32),
# THREADS (2), BODY_BYTES (1024), KEYS (1000), and those of bench/lib.sh
# (BENCH_DIR, BENCH_PORT, REDIS_PORT, BENCH_MODULE_SO).  Needs wrk
# (apt-get install wrk).  Exits non-zero only when something broke.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=${BENCH_DIR:-$here/../build/bench/instant}
BENCH_PORT=${BENCH_PORT:-8797}
REDIS_PORT=${REDIS_PORT:-6397}

. "$here/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BODY_BYTES=${BODY_BYTES:-1024}
KEYS=${KEYS:-1000}

CASE_DESC[ok]="return 200 (baseline)"
CASE_CONF[ok]="return 200 \"ok\\\\n\";"
CASE_DESC[hit]="module: instant-upload hit"
CASE_CONF[hit]="upload on; ${HIT_CONF:-}"

command -v wrk >/dev/null || bench_die "no wrk: apt-get install wrk"

trap bench_stop EXIT
[ -n "${BENCH_KEEP:-}" ] && trap - EXIT
mkdir -p "$BENCH_DIR"
bench_start ok hit

body=$BENCH_DIR/body.bin
head -c "$BODY_BYTES" /dev/urandom > "$body"
sha=$(sha256sum < "$body" | cut -d' ' -f1)

code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$body" \
            "http://127.0.0.1:$BENCH_PORT/hit/seed")
[ "$code" = 201 ] || bench_die "storing the content answered $code"

answer=$(curl -sS -H "X-Upload-Sha256: $sha" -T "$body" \
              "http://127.0.0.1:$BENCH_PORT/hit/check")
case $answer in
'{"exists":true,"dedup":true,'*) ;;
*) bench_die "a hit answered: $answer" ;;
esac

cat > "$BENCH_DIR/put.lua" <<LUA
local body = io.open("$body", "rb"):read("*a")
local n = 0
request = function()
    n = n + 1
    return wrk.format("PUT", wrk.path .. "k" .. (n % $KEYS),
                      { ["X-Upload-Sha256"] = "$sha" }, body)
end
LUA

# "Requests/sec", the 99th percentile in ms, and the non-2xx count
run_wrk() {
    local out rps p99 bad

    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
              -s "$BENCH_DIR/put.lua" "http://127.0.0.1:$BENCH_PORT/$1/")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<< "$out")
    p99=$(awk '$1 == "99%" { v = $2;
                 if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
                 else if (v ~ /ms$/) { sub(/ms$/, "", v) }
                 else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
                 printf "%.2f", v }' <<< "$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<< "$out")
    echo "$rps ${p99:-?} ${bad:-0}"
}

echo "== machine"
echo "cpus:       $(nproc), $(uname -r)"
echo "nginx:      $("$NGX_BINARY" -v 2>&1 | sed 's/.*: //'), worker_processes 1"
echo "wrk:        -t$THREADS -c$CONNECTIONS -d$DURATION, PUT with a $BODY_BYTES-byte body, $KEYS keys"
echo

declare -a ok_rps hit_rps ok_p99 hit_p99
for r in $(seq "$ROUNDS"); do
    read -r rps p99 bad <<< "$(run_wrk ok)"
    [ "$bad" = 0 ] || bench_die "return 200: $bad non-2xx answers"
    ok_rps+=("$rps"); ok_p99+=("$p99")
    read -r rps p99 bad <<< "$(run_wrk hit)"
    [ "$bad" = 0 ] || bench_die "hits: $bad non-2xx answers"
    hit_rps+=("$rps"); hit_p99+=("$p99")
    echo "round $r: return 200 ${ok_rps[-1]} req/s (p99 ${ok_p99[-1]} ms) | hit ${hit_rps[-1]} req/s (p99 ${hit_p99[-1]} ms)"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ok=$(median "${ok_rps[@]}")
hit=$(median "${hit_rps[@]}")
echo
printf '%-44s %12s %10s\n' "case (medians of $ROUNDS rounds)" "req/s" "p99 ms"
printf '%-44s %12s %10s\n' "return 200" "$ok" "$(median "${ok_p99[@]}")"
printf '%-44s %12s %10s\n' "instant-upload hit" "$hit" "$(median "${hit_p99[@]}")"
awk -v h="$hit" -v o="$ok" 'BEGIN {
    r = h / o
    printf "%-44s %12.2f  >= 0.5  %s\n", "hits / return 200", r,
           (r >= 0.5) ? "PASS" : "FAIL" }'

# every key of the run is the stored content, one inode
ino=$(stat -c %i "$BENCH_DIR/store/default/seed")
others=$(find "$BENCH_DIR/store/default" -type f ! -inum "$ino" | wc -l)
[ "$others" = 0 ] || bench_die "$others keys are not links to the content"
