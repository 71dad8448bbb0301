#!/usr/bin/env bash
# Throughput of a whole upload (PUT) through the module, against stock
# nginx's WebDAV PUT, on one nginx, in one run.  A measurement, not a test:
# it exits 0 whatever the figures, and non-zero only when something broke.
#
#   make && bench/put.sh
#
# Uploads a BENCH_SIZE_MIB (512) MiB file of random data with curl over
# HTTP/1.1 to 127.0.0.1, to
#   (a) the module as shipped (sha256, upload_fsync on)
#   (c) a stock nginx "dav_methods PUT" location
#   (b) the module with "upload_hash md5 sha256"
# one warm-up upload of each, then ROUNDS (5) rounds of a, c, b; before every
# upload the previous object is deleted and `sync` empties the dirty pages,
# so each upload creates a new file on a quiet disk.  Also runs
# `openssl speed -evp md5|sha256 -bytes 16384` (one core), before and after.
# Prints the machine, the median/min/max MiB/s of each case and the ratios
# against their targets: (a)/(c) >= 0.85 and (b)/(openssl md5) >= 0.90.
#
# Environment: ROUNDS, BENCH_CASES (the cases and their order, "a c b";
# bench/lib.sh defines d..g: a and b with upload_fsync off or
# upload_thread_pool off), BENCH_SYNC=0 (no sync between uploads), and those
# of bench/lib.sh (BENCH_BUFFER, BENCH_SIZE_MIB, BENCH_PORT, REDIS_PORT, ...).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-5}
BENCH_CASES=${BENCH_CASES:-a c b}
BENCH_SYNC=${BENCH_SYNC:-1}

case $ROUNDS in
''|*[!0-9]*|0) bench_die "ROUNDS must be a positive number" ;;
esac

for c in $BENCH_CASES; do
    [ -n "${CASE_DESC[$c]:-}" ] || bench_die "unknown case \"$c\" in BENCH_CASES"
done

mib() {
    awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}

# median, min and max of the numbers in $@
stats() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f %.1f %.1f", m, v[1], v[NR]
        }'
}

# single-core digest speed, MiB/s
openssl_speed() {
    openssl speed -evp "$1" -bytes 16384 -seconds 3 2>/dev/null \
        | awk -v a="$1" '$1 == a { sub(/k$/, "", $2);
                                   printf "%.1f", $2 * 1000 / 1048576 }'
}

max() {
    awk -v x="$1" -v y="$2" 'BEGIN { print (x > y) ? x : y }'
}

ratio() {
    awk -v x="$1" -v y="$2" 'BEGIN { printf "%.3f", (y > 0) ? x / y : 0 }'
}

verdict() {
    awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }'
}

# before an upload: no dirty pages left to write back while it runs
quiet() {
    if [ "$BENCH_SYNC" = 1 ]; then
        sync
    fi
}

now() {
    date +%s.%N
}

trap 'bench_stop' EXIT
trap 'exit 130' INT TERM

mkdir -p "$BENCH_DIR"

echo "== machine"
echo "cpus:       $(nproc) ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "kernel:     $(uname -sr)"
echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "store fs:   $(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 ", mounted on " $7 }') ($BENCH_DIR)"
echo "nginx:      $("$NGX_BINARY" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, client_body_buffer_size $BENCH_BUFFER"
echo "module:     $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$BENCH_ROOT" diff --quiet HEAD -- config ngx_http_upload_module.c src 2>/dev/null || echo ' + uncommitted changes'), .so built $(date -r "$BENCH_MODULE_BUILT" '+%F %T' 2>/dev/null || echo '?')"
echo "openssl:    $(openssl version)"
echo "curl:       $(curl --version | head -1 | cut -d' ' -f1-2)"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at start)"

bench_data
bench_start

echo
echo "== single-core digest speed (openssl speed -evp ALG -bytes 16384)"
md5_1=$(openssl_speed md5)
sha_1=$(openssl_speed sha256)
echo "md5 $md5_1 MiB/s, sha256 $sha_1 MiB/s"

echo
echo "== warm-up: one upload of each case"
for c in $BENCH_CASES; do
    quiet
    bench_upload "$c"

    size=$(stat -c %s "$(bench_object "$c")") \
        || bench_die "case $c: no object at $(bench_object "$c")"
    [ "$size" = $((BENCH_SIZE_MIB * 1048576)) ] \
        || bench_die "case $c: stored $size bytes"
    if [ "$c" != c ]; then
        case $UP_BODY in
        *"$BENCH_SHA256"*) ;;
        *) bench_die "case $c: the answer has not the file's sha256: $UP_BODY" ;;
        esac
    fi

    rm -f "$(bench_object "$c")"
    printf '%s  %7s MiB/s  %s\n' "$c" "$(mib "$UP_SPEED")" "${CASE_DESC[$c]}"
done

echo
echo "== $ROUNDS rounds of: $BENCH_CASES"
declare -A results=()
durable=()

for r in $(seq "$ROUNDS"); do
    line="round $r:"
    for c in $BENCH_CASES; do
        quiet
        bench_upload "$c"
        results[$c]="${results[$c]:-} $(mib "$UP_SPEED")"
        line="$line  $c $(mib "$UP_SPEED")"

        if [ "$c" = c ]; then
            # what the WebDAV upload costs once made as durable as (a)'s
            t0=$(now)
            sync "$(bench_object c)"
            t1=$(now)
            durable+=("$(awk -v s="$BENCH_SIZE_MIB" -v u="$UP_TIME" \
                             -v a="$t0" -v b="$t1" \
                             'BEGIN { printf "%.1f", s / (u + b - a) }')")
        fi

        # each upload creates a new file, and leaves no page cache behind
        rm -f "$(bench_object "$c")"
    done
    echo "$line"
done

echo
echo "== single-core digest speed, again"
md5_2=$(openssl_speed md5)
sha_2=$(openssl_speed sha256)
echo "md5 $md5_2 MiB/s, sha256 $sha_2 MiB/s"
md5=$(max "$md5_1" "$md5_2")
sha=$(max "$sha_1" "$sha_2")

echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at end)"

echo
echo "== results: MiB/s over $ROUNDS rounds, $BENCH_SIZE_MIB MiB per upload, client_body_buffer_size $BENCH_BUFFER"
printf '%-48s %8s %8s %8s\n' case median min max
declare -A median=()
for c in $BENCH_CASES; do
    # shellcheck disable=SC2086
    read -r m lo hi <<< "$(stats ${results[$c]})"
    median[$c]=$m
    printf '%-48s %8s %8s %8s\n' "($c) ${CASE_DESC[$c]}" "$m" "$lo" "$hi"
done
if [ ${#durable[@]} -gt 0 ]; then
    read -r m lo hi <<< "$(stats "${durable[@]}")"
    printf '%-48s %8s %8s %8s\n' "(c+) WebDAV PUT + fsync of the file afterwards" \
        "$m" "$lo" "$hi"
fi
printf '%-48s %8s\n' "openssl md5, 1 core (best of 2)" "$md5"
printf '%-48s %8s\n' "openssl sha256, 1 core (best of 2)" "$sha"

echo
printf '%-48s %8s %8s %8s\n' target ratio goal ""
if [ -n "${median[a]:-}" ] && [ -n "${median[c]:-}" ]; then
    q=$(ratio "${median[a]}" "${median[c]}")
    printf '%-48s %8s %8s %8s\n' "(a) / (c)" "$q" ">= 0.85" "$(verdict "$q" 0.85)"
fi
if [ -n "${median[b]:-}" ]; then
    q=$(ratio "${median[b]}" "$md5")
    printf '%-48s %8s %8s %8s\n' "(b) / openssl md5" "$q" ">= 0.90" "$(verdict "$q" 0.90)"
fi

exit 0
