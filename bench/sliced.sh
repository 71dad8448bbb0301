#!/usr/bin/env bash
# Time of a sliced upload (initiate, parts, complete) through the module,
# against a whole PUT of the same file to the same module, and time of its
# complete against `cp` of the same bytes, on one nginx, in one run.  A
# measurement, not a test: it exits 0 whatever the figures, and non-zero only
# when something broke.
#
#   make && bench/sliced.sh            (docs/performance.md, "Sliced uploads")
#
# Uploads a BENCH_SIZE_MIB (1024) MiB file of random data to one location
# (`upload on; upload_min_part_size 1m;`, client_body_buffer_size 512k,
# sha256, upload_fsync on) as
#   put    a whole PUT, with curl over HTTP/1.1
#   asc    a sliced upload: initiate with {"size", "part_size": 8 MiB}, the
#          parts in ascending order over 4 keep-alive HTTP/1.1 connections
#          (bench/sliced_client.py: Python's http.client, each part sent
#          from a mapping of the file), then complete
#   desc   the same, the parts sent in descending order
# and, right after asc, times `cp` of the merged object to a new file on the
# same filesystem, then `sync` of that copy, then `openssl dgst -sha256` of
# the object (from the page cache), as references for complete.  One warm-up
# of put, asc and desc (checked: the stored size, and the answer's sha256
# against the file's), then ROUNDS (3) rounds of put, asc (+ cp), desc.
# Every object is deleted once measured, and every upload starts after a
# `sync`.  Also measures, once, what the client can send on its own (the
# same parts to a sink that drops them), and, with strace, where the time
# of one more complete goes.  Prints the machine, the median/min/max seconds
# and MiB/s of each case, and the ratios against their targets: sliced total
# <= 1.3 x the whole PUT, complete <= 0.5 x cp.
#
# Environment:
#   ROUNDS         the number of rounds (3)
#   PART_MIB       the part size in MiB (8)
#   CONNECTIONS    the parallel connections of the sliced uploads (4)
#   SINK_PORT      the port of the sink on 127.0.0.1 (8798)
#   BREAKDOWN      0: no strace of a complete (1; skipped without strace)
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/sliced: put.sh's files and ports stay untouched),
# BENCH_PORT (8796), REDIS_PORT (6396), BENCH_SIZE_MIB (1024); BENCH_BUFFER,
# BENCH_SYNC, BENCH_MODULE_SO as there.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)

# the before-complete hook of the breakdown: strace attached to the worker
# (all its threads) until bench/sliced.sh stops it
if [ "${1:-}" = --attach-strace ]; then
    out=$2 pidfile=$3 worker=$4
    strace -f -ttt -T -o "$out" -p "$worker" \
        -e trace=copy_file_range,pread64,pwrite64,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,rmdir,openat,mkdir \
        2>/dev/null &
    echo $! > "$pidfile"
    # attached once every thread of the worker has a tracer
    for _ in $(seq 100); do
        all=1
        for t in /proc/"$worker"/task/*; do
            tp=$(awk '/^TracerPid:/ { print $2 }' "$t/status" 2>/dev/null)
            [ "${tp:-0}" != 0 ] || all=0
        done
        [ $all = 1 ] && exit 0
        sleep 0.05
    done
    echo "bench: strace did not attach" >&2
    exit 1
fi

BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/sliced}
BENCH_PORT=${BENCH_PORT:-8796}
REDIS_PORT=${REDIS_PORT:-6396}
BENCH_SIZE_MIB=${BENCH_SIZE_MIB:-1024}

. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
PART_MIB=${PART_MIB:-8}
CONNECTIONS=${CONNECTIONS:-4}
SINK_PORT=${SINK_PORT:-8798}
BREAKDOWN=${BREAKDOWN:-1}
CLIENT=$HERE/sliced_client.py
PYTHON=${PYTHON:-python3}

for v in ROUNDS PART_MIB CONNECTIONS BENCH_SIZE_MIB; do
    case ${!v} in
    ''|*[!0-9]*|0) bench_die "$v must be a positive number" ;;
    esac
done

# one case of lib.sh: its location is /upload/
CASE_DESC[upload]="module, sha256, fsync on, upload_min_part_size 1m"
CASE_CONF[upload]="upload on; upload_min_part_size 1m;"

SIZE=$((BENCH_SIZE_MIB * 1048576))
PART=$((PART_MIB * 1048576))
NPARTS=$(((SIZE + PART - 1) / PART))
URL=http://127.0.0.1:$BENCH_PORT/upload
OBJ_DIR=$BENCH_DIR/store/default

SINK_PID=
STRACE_PIDFILE=$BENCH_DIR/strace.pid

cleanup() {
    local p

    if [ -n "$SINK_PID" ] && proc_alive "$SINK_PID"; then
        kill "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    if p=$(pidfile_pid "$STRACE_PIDFILE" strace); then
        kill "$p" 2>/dev/null || true
    fi
    rm -f "$STRACE_PIDFILE"
    bench_stop
    rm -rf "$BENCH_DIR"/store/.upload-parts "$BENCH_DIR"/copy.bin \
           "$BENCH_DIR"/client.json
}

trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$BENCH_DIR"

# --- arithmetic and formatting ----------------------------------------------

# "median min max" of the numbers in $@, 3 decimals
stats() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.3f %.3f %.3f", m, v[1], v[NR]
        }'
}

median() {
    stats "$@" | cut -d' ' -f1
}

ratio() {
    awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", (y > 0) ? x / y : 0 }'
}

# PASS when RATIO <= GOAL
verdict() {
    awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "PASS" : "FAIL" }'
}

mibs() {
    awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0) ? b / 1048576 / s : 0 }'
}

f3() {
    awk -v x="$1" 'BEGIN { printf "%.3f", x }'
}

sub() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'
}

# a number field of the client's JSON answer line
jnum() {
    sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" "$BENCH_DIR/client.json"
}

jstr() {
    sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$BENCH_DIR/client.json"
}

# cpu ticks -> cpu seconds per GiB of the file
per_gib() {
    awk -v t="$1" -v tck="$BENCH_TCK" -v s="$BENCH_SIZE_MIB" \
        'BEGIN { printf "%.2f", t / tck / (s / 1024) }'
}

# --- the machine -------------------------------------------------------------

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
echo "location:   ${CASE_CONF[upload]} (sha256, upload_fsync on)"
echo "clients:    $(curl --version | head -1 | cut -d' ' -f1-2) (whole PUT); $("$PYTHON" --version 2>&1) http.client, $CONNECTIONS connections (sliced)"
echo "file:       $BENCH_SIZE_MIB MiB; $NPARTS parts of $PART_MIB MiB"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at start)"

command -v "$PYTHON" >/dev/null || bench_die "no $PYTHON"
bench_port_busy "$SINK_PORT" \
    && bench_die "127.0.0.1:$SINK_PORT is taken: set SINK_PORT"

bench_data
bench_start upload

# --- one upload of each kind -----------------------------------------------

# CPU around a measured step: nginx's worker, this shell's children, the
# machine.  Sets CPU_NGINX, CPU_CLIENT (ticks) and CPU_REST (cores).
cpu_begin() {
    read -r CM0 CP0 <<< "$(bench_worker_ticks)"
    bench_child_ticks
    CK0=$BENCH_CHILD_TICKS
    CB0=$(bench_machine_ticks)
    CT0=$EPOCHREALTIME
}

cpu_end() {
    local m1 p1 b1 t1

    t1=$EPOCHREALTIME
    b1=$(bench_machine_ticks)
    bench_child_ticks
    read -r m1 p1 <<< "$(bench_worker_ticks)"
    CPU_NGINX=$((m1 - CM0 + p1 - CP0))
    CPU_CLIENT=$((BENCH_CHILD_TICKS - CK0))
    CPU_REST=$(awk -v t=$((b1 - CB0 - CPU_NGINX - CPU_CLIENT)) \
        -v tck="$BENCH_TCK" -v a="$CT0" -v b="$t1" \
        'BEGIN { x = t / tck / (b - a); printf "%.2f", (x > 0) ? x : 0 }')
}

delete_object() {
    local code

    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$URL/$1") \
        || bench_die "DELETE $1 failed"
    [ "$code" = 204 ] || bench_die "DELETE $1: HTTP $code"
    [ ! -e "$OBJ_DIR/$1" ] || bench_die "DELETE $1 left $OBJ_DIR/$1"
}

check_object() {
    local size

    size=$(stat -c %s "$OBJ_DIR/$1" 2>/dev/null) \
        || bench_die "$1: no object at $OBJ_DIR/$1"
    [ "$size" = "$SIZE" ] || bench_die "$1: stored $size bytes, not $SIZE"
}

# The whole PUT: T_TOTAL (s)
run_put() {
    bench_quiet
    cpu_begin
    bench_upload upload
    cpu_end
    T_TOTAL=$UP_TIME
    case $UP_BODY in
    *"\"sha256\":\"$BENCH_SHA256\""*) ;;
    *) bench_die "put: not the file's sha256 in: $UP_BODY" ;;
    esac
    check_object obj-upload
    delete_object obj-upload
}

# A sliced upload, parts in order $1 (asc, desc), to key $2, [client
# options]: T_TOTAL, T_PARTS, T_COMPLETE (s), T_CLIENT_CPU (s)
run_sliced() {
    local order=$1 key=$2

    shift 2
    bench_quiet
    cpu_begin
    "$PYTHON" "$CLIENT" upload "$URL/$key" "$BENCH_FILE" \
        --part-size "$PART" --connections "$CONNECTIONS" --order "$order" \
        --sha256 "$BENCH_SHA256" "$@" > "$BENCH_DIR/client.json" \
        || bench_die "sliced upload ($order) failed: $(cat "$BENCH_DIR/client.json")"
    cpu_end
    T_TOTAL=$(f3 "$(jnum t_total)")
    T_PARTS=$(f3 "$(jnum t_parts)")
    T_COMPLETE=$(f3 "$(jnum t_complete)")
    T_CLIENT_CPU=$(jnum client_cpu)
    [ "$(jstr sha256)" = "$BENCH_SHA256" ] \
        || bench_die "sliced ($order): sha256 $(jstr sha256)"
    check_object "$key"
}

# cp of the merged object, then sync of the copy, then SHA-256 of the object
# (openssl, from the page cache): T_CP, T_CPSYNC, T_SHA (s)
run_refs() {
    local t0 t1 t2 t3

    bench_quiet
    t0=$EPOCHREALTIME
    cp "$OBJ_DIR/$1" "$BENCH_DIR/copy.bin"
    t1=$EPOCHREALTIME
    sync "$BENCH_DIR/copy.bin"
    t2=$EPOCHREALTIME
    cmp -s <(openssl dgst -sha256 -r "$OBJ_DIR/$1" | cut -c1-64) \
        <(echo "$BENCH_SHA256") || bench_die "$1: the stored object is not the file"
    t3=$EPOCHREALTIME
    rm -f "$BENCH_DIR/copy.bin"
    T_CP=$(f3 "$(sub "$t1" "$t0")")
    T_CPSYNC=$(f3 "$(sub "$t2" "$t0")")
    T_SHA=$(f3 "$(sub "$t3" "$t2")")
}

# --- the client alone --------------------------------------------------------

echo
echo "== the client alone: $NPARTS parts of $PART_MIB MiB over $CONNECTIONS connections to a sink that drops them (no nginx)"
"$PYTHON" "$CLIENT" sink "$SINK_PORT" &
SINK_PID=$!
for _ in $(seq 50); do
    bench_port_busy "$SINK_PORT" && break
    sleep 0.1
done
sink=()
for i in 1 2 3; do
    "$PYTHON" "$CLIENT" upload "http://127.0.0.1:$SINK_PORT/sink/x" \
        "$BENCH_FILE" --part-size "$PART" --connections "$CONNECTIONS" \
        --sink > "$BENCH_DIR/client.json" || bench_die "sink upload failed"
    sink+=("$(jnum t_parts)")
    echo "run $i: parts $(f3 "$(jnum t_parts)") s ($(mibs "$SIZE" "$(jnum t_parts)") MiB/s), client CPU $(jnum client_cpu) s"
done
kill "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=

# --- warm-up -----------------------------------------------------------------

echo
echo "== warm-up: one of each (checked: size on disk, sha256 in the answer)"
run_put
echo "put   total $T_TOTAL s"
run_sliced asc obj-asc
echo "asc   total $T_TOTAL s (parts $T_PARTS, complete $T_COMPLETE); etag $(jstr etag)"
delete_object obj-asc
run_sliced desc obj-desc
echo "desc  total $T_TOTAL s (parts $T_PARTS, complete $T_COMPLETE)"
delete_object obj-desc

# --- rounds ------------------------------------------------------------------

declare -A T=()     # case -> " s s s"
declare -A C=()     # case -> " nginx-cpu-s/GiB ..." etc.

add() {
    T[$1]="${T[$1]:-} $2"
}

echo
echo "== $ROUNDS rounds of: put, asc (+ cp, sync, sha256 of its object), desc  (seconds)"
for r in $(seq "$ROUNDS"); do
    run_put
    add put "$T_TOTAL"
    C[put_nginx]="${C[put_nginx]:-} $(per_gib "$CPU_NGINX")"
    C[put_client]="${C[put_client]:-} $(per_gib "$CPU_CLIENT")"
    C[put_rest]="${C[put_rest]:-} $CPU_REST"
    line="round $r: put $T_TOTAL"

    run_sliced asc obj-asc
    add asc "$T_TOTAL"
    add asc_parts "$T_PARTS"
    add asc_complete "$T_COMPLETE"
    C[asc_nginx]="${C[asc_nginx]:-} $(per_gib "$CPU_NGINX")"
    C[asc_client]="${C[asc_client]:-} $(awk -v c="$T_CLIENT_CPU" \
        -v s="$BENCH_SIZE_MIB" 'BEGIN { printf "%.2f", c / (s / 1024) }')"
    C[asc_rest]="${C[asc_rest]:-} $CPU_REST"
    line="$line | asc $T_TOTAL (parts $T_PARTS, complete $T_COMPLETE)"

    run_refs obj-asc
    add cp "$T_CP"
    add cpsync "$T_CPSYNC"
    add sha "$T_SHA"
    delete_object obj-asc
    line="$line | cp $T_CP, +sync $T_CPSYNC, sha256 $T_SHA"

    run_sliced desc obj-desc
    add desc "$T_TOTAL"
    add desc_parts "$T_PARTS"
    add desc_complete "$T_COMPLETE"
    delete_object obj-desc
    line="$line | desc $T_TOTAL (parts $T_PARTS, complete $T_COMPLETE)"

    echo "$line"
done

# --- where one complete's time goes (strace) ---------------------------------

BD=
if [ "$BREAKDOWN" = 1 ] && command -v strace >/dev/null; then
    echo
    echo "== one more sliced upload (asc), its complete under strace -f on the worker"
    trace=$BENCH_DIR/complete.strace
    rm -f "$trace"
    run_sliced asc obj-asc \
        --before-complete "bash '$HERE/sliced.sh' --attach-strace '$trace' '$STRACE_PIDFILE' '$NGX_WORKER'"
    if p=$(pidfile_pid "$STRACE_PIDFILE" strace); then
        kill "$p" 2>/dev/null || true
        for _ in $(seq 50); do proc_alive "$p" || break; sleep 0.1; done
    fi
    rm -f "$STRACE_PIDFILE"
    delete_object obj-asc
    BD_COMPLETE=$T_COMPLETE
    echo "complete $T_COMPLETE s (parts $T_PARTS s)"

    # phases of the pool thread that merged: calls start at their
    # timestamp and last <d>; "<unfinished ...>"/"resumed>" pairs joined
    BD=$(awk '
        function call(name, start, dur) {
            end = start + dur
            if (!(name in first) || start < first[name]) first[name] = start
            if (!(name in last) || end > last[name]) last[name] = end
            sum[name] += dur
            cnt[name]++
        }
        {
            pid = $1; ts = $2
            if ($0 ~ /<unfinished \.\.\.>$/) {
                split($3, a, "("); pend[pid] = a[1]; pts[pid] = ts; next
            }
            if (match($0, /<[0-9.]+>$/)) {
                dur = substr($0, RSTART + 1, RLENGTH - 2)
            } else next
            if ($3 == "<...") { name = $4; start = pts[pid] }
            else { split($3, a, "("); name = a[1]; start = ts }
            if (name == "unlinkat") name = "unlink"
            if (name == "renameat" || name == "renameat2") name = "rename"
            call(name, start, dur)
        }
        END {
            printf "copy %.3f %.3f %d\n", last["copy_file_range"] - first["copy_file_range"], sum["copy_file_range"], cnt["copy_file_range"]
            printf "hash %.3f %.3f %d\n", last["pread64"] - first["pread64"], sum["pread64"], cnt["pread64"]
            printf "fsync %.3f %.3f %d\n", 0, sum["fsync"], cnt["fsync"]
            printf "rename %.3f %.3f %d\n", 0, sum["rename"], cnt["rename"]
            printf "unlink %.3f %.3f %d\n", last["unlink"] - first["unlink"], sum["unlink"], cnt["unlink"]
        }' "$trace")
    echo "$BD" | awk '{ printf "%-7s span %s s, in the calls %s s, %s calls\n", $1, $2, $3, $4 }'
fi

echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at end)"

# --- the table -----------------------------------------------------------------

row() {     # label key [bytes]
    local m lo hi bytes=${3:-$SIZE}

    # shellcheck disable=SC2086
    read -r m lo hi <<< "$(stats ${T[$2]})"
    printf '%-52s %7s %7s %7s %7s\n' "$1" "$m" "$lo" "$hi" "$(mibs "$bytes" "$m")"
    MED[$2]=$m
}

declare -A MED=()
echo
echo "== results: $ROUNDS rounds, $BENCH_SIZE_MIB MiB, $NPARTS parts of $PART_MIB MiB, $CONNECTIONS connections"
printf '%-52s %7s %7s %7s %7s\n' case median min max MiB/s
row "whole PUT (curl -T)" put
row "sliced, parts in order: total" asc
row "  parts" asc_parts
row "  complete" asc_complete
row "sliced, parts in reverse order: total" desc
row "  parts" desc_parts
row "  complete" desc_complete
row "cp of the merged object (same fs)" cp
row "cp, then sync of the copy" cpsync
row "openssl dgst -sha256 of the object (page cache)" sha
read -r m lo hi <<< "$(stats "${sink[@]}")"
printf '%-52s %7s %7s %7s %7s\n' "client alone: parts to a sink (no nginx)" \
    "$m" "$lo" "$hi" "$(mibs "$SIZE" "$m")"

echo
echo "   CPU, medians: cpu-s per GiB of nginx's worker and of the client; the rest of"
echo "   the machine meanwhile, in cores (of $(nproc)): above 0.1, a noisy run"
printf '%-52s %7s %7s %7s\n' "" nginx client others
# shellcheck disable=SC2086
printf '%-52s %7s %7s %7s\n' "whole PUT" "$(median ${C[put_nginx]})" \
    "$(median ${C[put_client]})" "$(median ${C[put_rest]})"
# shellcheck disable=SC2086
printf '%-52s %7s %7s %7s\n' "sliced, in order (parts and complete)" \
    "$(median ${C[asc_nginx]})" "$(median ${C[asc_client]})" \
    "$(median ${C[asc_rest]})"

if [ -n "$BD" ]; then
    echo
    echo "   one complete (in order) under strace, $BD_COMPLETE s in all:"
    echo "$BD" | awk -v all="$BD_COMPLETE" '
        $1 == "copy"   { printf "   %-49s %7.3f s (%2.0f%%)\n", "copy (copy_file_range x " $4 ")", $2, 100 * $2 / all; used += $2 }
        $1 == "hash"   { printf "   %-49s %7.3f s (%2.0f%%), of it reading %.3f s\n", "sha256 pass (pread 1 MiB x " $4 ")", $2, 100 * $2 / all, $3; used += $2 }
        $1 == "fsync"  { printf "   %-49s %7.3f s (%2.0f%%)\n", "fsync x " $4 " (the merged file, its directory)", $3, 100 * $3 / all; used += $3 }
        $1 == "rename" { printf "   %-49s %7.3f s\n", "rename", $3; used += $3 }
        $1 == "unlink" { printf "   %-49s %7.3f s (%2.0f%%)\n", "removing the parts (unlink x " $4 ")", $2, 100 * $2 / all; used += $2 }
        END { printf "   %-49s %7.3f s\n", "the rest (Redis, event loop, hand-offs)", all - used }'
fi

echo
printf '%-52s %7s %7s %7s\n' target ratio goal ""
q=$(ratio "${MED[asc]}" "${MED[put]}")
printf '%-52s %7s %7s %7s\n' "sliced total (in order) / whole PUT" "$q" "<= 1.3" "$(verdict "$q" 1.3)"
q=$(ratio "${MED[desc]}" "${MED[put]}")
printf '%-52s %7s %7s %7s\n' "sliced total (reverse) / whole PUT" "$q" "(1.3)" "$(verdict "$q" 1.3)"
q=$(ratio "${MED[asc_complete]}" "${MED[cp]}")
printf '%-52s %7s %7s %7s\n' "complete (in order) / cp" "$q" "<= 0.5" "$(verdict "$q" 0.5)"
q=$(ratio "${MED[desc_complete]}" "${MED[cp]}")
printf '%-52s %7s %7s %7s\n' "complete (reverse) / cp" "$q" "<= 0.5" "$(verdict "$q" 0.5)"
q=$(ratio "${MED[asc_complete]}" "${MED[cpsync]}")
printf '%-52s %7s %7s %7s\n' "complete (in order) / (cp + sync)" "$q" "(info)" ""

exit 0
