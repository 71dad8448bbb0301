#!/usr/bin/env bash
# Throughput of a whole upload (PUT) through the module, against stock
# nginx's WebDAV PUT, on one nginx, in one run.  A measurement, not a test:
# it exits 0 whatever the figures, and non-zero only when something broke.
#
#   make && bench/put.sh               (docs/performance.md explains it all)
#
# Uploads a BENCH_SIZE_MIB (512) MiB file of random data with curl over
# HTTP/1.1 to 127.0.0.1, to
#   (a) the module as shipped (sha256, upload_fsync on)
#   (c) a stock nginx "dav_methods PUT" location
#   (b) the module with "upload_hash md5 sha256"
# one warm-up upload of each, then ROUNDS (5) rounds of a, c, b.  Every
# upload creates a new file (the previous one is deleted right after it was
# measured), and starts after a `sync`, with no dirty pages left to write.
# Also runs `openssl speed -evp md5|sha256 -bytes 16384` (one core), before
# and after the uploads.  Prints the machine, the median/min/max MiB/s of
# each case, and the ratios against their targets: (a)/(c) >= 0.85 and
# (b)/(openssl md5) >= 0.90.
#
# Environment:
#   ROUNDS        the number of rounds (5)
#   BENCH_CASES   the cases and their order in a round ("a c b"); see
#                 bench/lib.sh: d..g are a and b with upload_fsync off or
#                 upload_thread_pool off, and CASE@SIZE gives a case its own
#                 client_body_buffer_size ("a@64k a@1m c")
# and those of bench/lib.sh (BENCH_BUFFER, BENCH_SIZE_MIB, BENCH_PORT,
# REDIS_PORT, BENCH_DIR, BENCH_SYNC, BENCH_MODULE_SO).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-5}
BENCH_CASES=${BENCH_CASES:-a c b}

case $ROUNDS in
''|*[!0-9]*|0) bench_die "ROUNDS must be a positive number" ;;
esac

# shellcheck disable=SC2086
bench_cases $BENCH_CASES
CASES=("${BENCH_ALL[@]}")

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

median() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f", m
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

now() {
    date +%s.%N
}

trap 'bench_stop' EXIT
trap 'exit 130' INT TERM

mkdir -p "$BENCH_DIR"

module_state() {
    local head dirty=""

    head=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null) \
        || { echo "?"; return; }
    git -C "$BENCH_ROOT" diff --quiet HEAD -- config ngx_http_upload_module.c \
        src 2>/dev/null || dirty=" + uncommitted changes"
    echo "$head$dirty, .so of $(date -r "$BENCH_MODULE_BUILT" '+%F %T')"
}

echo "== machine"
echo "cpus:       $(nproc) ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "kernel:     $(uname -sr)"
echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "store fs:   $(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 ", mounted on " $7 }') ($BENCH_DIR)"
echo "nginx:      $("$NGX_BINARY" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, client_body_buffer_size $BENCH_BUFFER"
echo "module:     $(module_state)"
echo "openssl:    $(openssl version)"
echo "curl:       $(curl --version | head -1 | cut -d' ' -f1-2)"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at start)"

bench_data
bench_start "${CASES[@]}"

echo
echo "== single-core digest speed (openssl speed -evp ALG -bytes 16384)"
md5_1=$(openssl_speed md5)
sha_1=$(openssl_speed sha256)
echo "md5 $md5_1 MiB/s, sha256 $sha_1 MiB/s"

echo
echo "== warm-up: one upload of each case"
for c in "${CASES[@]}"; do
    bench_quiet
    bench_upload "$c"

    size=$(stat -c %s "$(bench_object "$c")") \
        || bench_die "case $c: no object at $(bench_object "$c")"
    [ "$size" = $((BENCH_SIZE_MIB * 1048576)) ] \
        || bench_die "case $c: stored $size bytes"
    # the module's answer must have the right digests
    case $c in
    c|c@*) ;;
    *)
        case $UP_BODY in
        *"\"sha256\":\"$BENCH_SHA256\""*) ;;
        *) bench_die "case $c: not the file's sha256 in: $UP_BODY" ;;
        esac
        ;;
    esac
    case ${CASE_CONF[${c%%@*}]} in
    *md5*)
        case $UP_BODY in
        *"\"md5\":\"$BENCH_MD5\""*) ;;
        *) bench_die "case $c: not the file's md5 in: $UP_BODY" ;;
        esac
        ;;
    esac

    rm -f "$(bench_object "$c")"
    printf '%-8s %7s MiB/s  %s\n' "$c" "$(mib "$UP_SPEED")" "$(bench_desc "$c")"
done

echo
echo "== $ROUNDS rounds of: ${CASES[*]}  (MiB/s)"
declare -A speed=() cpu=() rest=()
durable=()

for r in $(seq "$ROUNDS"); do
    line="round $r:"
    for c in "${CASES[@]}"; do
        bench_quiet
        bench_upload "$c"

        speed[$c]="${speed[$c]:-} $(mib "$UP_SPEED")"
        # nginx's CPU seconds per GiB uploaded; the rest of the machine's
        # CPU use meanwhile, in cores
        cpu[$c]="${cpu[$c]:-} $(awk -v t=$((UP_MAIN + UP_POOL)) \
            -v tck="$BENCH_TCK" -v s="$BENCH_SIZE_MIB" \
            'BEGIN { printf "%.3f", t / tck / (s / 1024) }')"
        rest[$c]="${rest[$c]:-} $(awk -v t="$UP_REST" -v tck="$BENCH_TCK" \
            -v w="$UP_TIME" 'BEGIN { x = t / tck / w; printf "%.3f", (x > 0) ? x : 0 }')"
        line="$line  $c $(mib "$UP_SPEED")"

        case $c in
        c|c@*)
            # what the WebDAV upload costs once made as durable as (a)'s
            t0=$(now)
            sync "$(bench_object "$c")"
            t1=$(now)
            durable+=("$(awk -v s="$BENCH_SIZE_MIB" -v u="$UP_TIME" \
                             -v a="$t0" -v b="$t1" \
                             'BEGIN { printf "%.1f", s / (u + b - a) }')")
            ;;
        esac

        # every upload creates a new file, and leaves no page cache behind
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
echo "== results: $ROUNDS rounds, $BENCH_SIZE_MIB MiB per upload"
echo "   MiB/s: curl's speed_upload; nginx CPU: its worker's CPU seconds per GiB"
echo "   (event loop + thread pool); others: the CPU the rest of the machine used"
echo "   meanwhile, in cores (of $(nproc)), medians"
printf '%-54s %7s %7s %7s %6s %6s\n' case MiB/s min max nginx others
declare -A med=()
for c in "${CASES[@]}"; do
    # shellcheck disable=SC2086
    read -r m lo hi <<< "$(stats ${speed[$c]})"
    med[$c]=$m
    # shellcheck disable=SC2086
    printf '%-54s %7s %7s %7s %6s %6s\n' "($c) $(bench_desc "$c")" \
        "$m" "$lo" "$hi" "$(median ${cpu[$c]})" "$(median ${rest[$c]})"
done
if [ ${#durable[@]} -gt 0 ]; then
    read -r m lo hi <<< "$(stats "${durable[@]}")"
    printf '%-54s %7s %7s %7s\n' "(c+) WebDAV PUT, then fsync of the file" \
        "$m" "$lo" "$hi"
fi
printf '%-54s %7s\n' "openssl md5, 1 core (best of 2)" "$md5"
printf '%-54s %7s\n' "openssl sha256, 1 core (best of 2)" "$sha"

echo
printf '%-54s %7s %7s %7s\n' target ratio goal ""
if [ -n "${med[a]:-}" ] && [ -n "${med[c]:-}" ]; then
    q=$(ratio "${med[a]}" "${med[c]}")
    printf '%-54s %7s %7s %7s\n' "(a) / (c)" "$q" ">= 0.85" "$(verdict "$q" 0.85)"
fi
if [ -n "${med[b]:-}" ]; then
    q=$(ratio "${med[b]}" "$md5")
    printf '%-54s %7s %7s %7s\n' "(b) / openssl md5" "$q" ">= 0.90" "$(verdict "$q" 0.90)"
fi

exit 0
