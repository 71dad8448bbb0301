#!/usr/bin/env bash
# Time of a sliced upload (initiate, parts, complete) through the module,
# against a whole PUT of the same file to the same module, and time of its
# complete against `cp` of the same bytes, on one nginx, in one run.  A
# measurement, not a test: it exits 0 whatever the figures, and non-zero only
# when something broke.
#
#   make && bench/sliced.sh            (docs/performance.md, "Sliced uploads")
#
# Uploads a BENCH_SIZE_MIB (1024) MiB file of random data to one location,
# /upload/ (`upload on; upload_min_part_size 1m;`, client_body_buffer_size
# 512k, sha256, upload_fsync on), as
#   put       a whole PUT, with curl over HTTP/1.1
#   asc       a sliced upload: initiate with {"size", "part_size": 8 MiB},
#             the parts in ascending order over 4 keep-alive HTTP/1.1
#             connections (bench/sliced_client.py: Python's http.client,
#             each part one sendall() from a mapping of the file), then
#             complete; the answer's sha256 must be the file's
#   desc      the same, the parts sent in descending order
#   asc+cp, desc+cp
#             the same again, with, once the parts are in and before the
#             complete is sent (outside the timed path), a timed `cp` of the
#             data file (the same bytes) to a new file on the same
#             filesystem, `sync` of the copy, and its removal
# The cp of asc+cp and desc+cp ("cp cold") meets memory in the very state
# the complete of asc and desc meets: this VM hands memory left free for a
# few seconds back to its host, and writing into it again is 3-6 times
# slower (docs/performance.md).  Their complete then meets warm memory (the
# copy's, just freed), as does "cp hot": a cp of asc's merged object right
# after its complete, which has just freed the parts' page cache.
# Also timed: `openssl dgst -sha256` of the object (page cache), and a whole
# PUT to a second location (/md5/: `upload_hash md5 sha256`), which computes
# the two digests that every part computes.
# One warm-up of put, put md5, asc and desc (checked: the stored size, the
# answer's sha256), then ROUNDS (3) rounds of put, put md5, asc (+ cp hot),
# asc+cp, desc, desc+cp.  Every object is deleted once measured, every
# upload starts after a `sync`.  Also measures, once, what the client can
# send alone (the same parts to a sink that drops them), and with strace
# where the time of a complete goes, as it comes and after a cp.  Prints
# the machine, median/min/max seconds and MiB/s of each case, the CPU, and
# the ratios against their targets: sliced total <= 1.3 x the whole PUT,
# complete <= 0.5 x cp.
#
# Environment:
#   ROUNDS         the number of rounds (3)
#   PART_MIB       the part size in MiB (8)
#   CONNECTIONS    the parallel connections of the sliced uploads (4)
#   SINK_PORT      the port of the sink on 127.0.0.1 (8798)
#   BREAKDOWN      0: no strace of a complete (1; skipped without strace)
#   PYTHON         the Python 3 of the client (python3)
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/sliced: bench/put.sh's files and ports stay untouched),
# BENCH_PORT (8796), REDIS_PORT (6396), BENCH_SIZE_MIB (1024); BENCH_BUFFER,
# BENCH_SYNC, BENCH_MODULE_SO as there.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)

# The client's hook between the parts and the complete (not timed):
#   --hook WORKER TICKS COPY STRACE STRACE_PID
# with COPY (a path, or -): times `cp` of the data file (DATA, from the
# environment) to COPY, then `sync COPY`, writes both times to TICKS.cp and
# removes COPY: a cp in the very state of memory that the complete would
# meet, and memory warm for the complete; then writes the CPU ticks of
# nginx's worker so far to TICKS, and with STRACE (its output, or -),
# attaches strace to all the worker's threads until bench/sliced.sh kills it
# (its pid in STRACE_PID).
if [ "${1:-}" = --hook ]; then
    worker=$2 ticks=$3 copy=$4 out=$5 pidfile=$6

    if [ "$copy" != - ]; then
        t0=$EPOCHREALTIME
        cp "$DATA" "$copy"
        t1=$EPOCHREALTIME
        sync "$copy"
        t2=$EPOCHREALTIME
        rm -f "$copy"
        awk -v a="$t0" -v b="$t1" -v c="$t2" \
            'BEGIN { printf "%.3f %.3f\n", b - a, c - a }' > "$ticks.cp"
    fi

    sum=0
    for t in /proc/"$worker"/task/*; do
        read -r stat < "$t/stat" || continue
        # shellcheck disable=SC2086
        set -- ${stat##*) }
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum" > "$ticks"

    if [ "$out" != - ]; then
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
    exit 0
fi

BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/sliced}
BENCH_PORT=${BENCH_PORT:-8796}
REDIS_PORT=${REDIS_PORT:-6396}
BENCH_SIZE_MIB=${BENCH_SIZE_MIB:-1024}

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
PART_MIB=${PART_MIB:-8}
CONNECTIONS=${CONNECTIONS:-4}
SINK_PORT=${SINK_PORT:-8798}
BREAKDOWN=${BREAKDOWN:-1}
PYTHON=${PYTHON:-python3}
CLIENT=$HERE/sliced_client.py

for v in ROUNDS PART_MIB CONNECTIONS BENCH_SIZE_MIB; do
    case ${!v} in
    ''|*[!0-9]*|0) bench_die "$v must be a positive number" ;;
    esac
done

# two cases of lib.sh: locations /upload/ and /md5/
CASE_DESC[upload]="module, sha256, fsync on, upload_min_part_size 1m"
CASE_CONF[upload]="upload on; upload_min_part_size 1m;"
CASE_DESC[md5]="module, md5 + sha256, fsync on"
CASE_CONF[md5]="upload on; upload_hash md5 sha256;"

SIZE=$((BENCH_SIZE_MIB * 1048576))
PART=$((PART_MIB * 1048576))
NPARTS=$(((SIZE + PART - 1) / PART))
URL=http://127.0.0.1:$BENCH_PORT/upload
OBJ_DIR=$BENCH_DIR/store/default
COPY_FILE=$BENCH_DIR/copy.bin
TICKS_FILE=$BENCH_DIR/hook.ticks
STRACE_PIDFILE=$BENCH_DIR/strace.pid

SINK_PID=

stop_strace() {
    local p i

    if p=$(pidfile_pid "$STRACE_PIDFILE" strace); then
        kill "$p" 2>/dev/null || true
        for i in $(seq 50); do
            proc_alive "$p" || break
            sleep 0.1
        done
    fi
    rm -f "$STRACE_PIDFILE"
}

# shellcheck disable=SC2317  # (the EXIT trap calls it)
cleanup() {
    if [ -n "$SINK_PID" ] && proc_alive "$SINK_PID"; then
        kill "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    stop_strace
    bench_stop
    rm -rf "$BENCH_DIR"/store/.upload-parts "$COPY_FILE" \
           "$BENCH_DIR"/client.json "$TICKS_FILE" "$TICKS_FILE.cp"
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
    stats "$@" | awk '{ printf "%.2f", $1 }'
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

# A - B, 3 decimals
sub() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'
}

# a number field of the client's JSON line
jnum() {
    sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" "$BENCH_DIR/client.json"
}

jstr() {
    sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$BENCH_DIR/client.json"
}

# CPU ticks -> CPU seconds per GiB of the file
per_gib() {
    awk -v t="$1" -v tck="$BENCH_TCK" -v s="$BENCH_SIZE_MIB" \
        'BEGIN { printf "%.2f", t / tck / (s / 1024) }'
}

# --- the machine ---------------------------------------------------------------

module_state() {
    local head dirty=""

    head=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null) \
        || { echo "?"; return; }
    git -C "$BENCH_ROOT" diff --quiet HEAD -- config ngx_http_upload_module.c \
        src 2>/dev/null || dirty=" + uncommitted changes"
    echo "$head$dirty, .so of $(date -r "$BENCH_MODULE_BUILT" '+%F %T')"
}

command -v "$PYTHON" >/dev/null || bench_die "no $PYTHON"

echo "== machine"
echo "cpus:       $(nproc) ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "kernel:     $(uname -sr)"
echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "store fs:   $(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 " on " $1 ", mounted on " $7 }') ($BENCH_DIR)"
echo "nginx:      $("$NGX_BINARY" -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, client_body_buffer_size $BENCH_BUFFER"
echo "module:     $(module_state)"
echo "location:   /upload/: ${CASE_CONF[upload]} (sha256, upload_fsync on)"
echo "clients:    $(curl --version | head -1 | cut -d' ' -f1-2) (whole PUT); $("$PYTHON" --version 2>&1) http.client, $CONNECTIONS connections (sliced)"
echo "file:       $BENCH_SIZE_MIB MiB; $NPARTS parts of $PART_MIB MiB"
echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at start)"

bench_port_busy "$SINK_PORT" \
    && bench_die "127.0.0.1:$SINK_PORT is taken: set SINK_PORT"

bench_data
bench_start upload md5

# --- one upload of each kind -------------------------------------------------

# CPU around a measured step: nginx's worker, this shell's children, the
# whole machine.  cpu_end sets CPU_NGINX and CPU_CLIENT (ticks), and
# CPU_REST: the rest of the machine meanwhile, in cores.
cpu_begin() {
    local m p

    read -r m p <<< "$(bench_worker_ticks)"
    CW0=$((m + p))
    bench_child_ticks
    CK0=$BENCH_CHILD_TICKS
    CB0=$(bench_machine_ticks)
    CT0=$EPOCHREALTIME
}

cpu_end() {
    local m p b1 t1

    t1=$EPOCHREALTIME
    b1=$(bench_machine_ticks)
    bench_child_ticks
    read -r m p <<< "$(bench_worker_ticks)"
    CW1=$((m + p))
    CPU_NGINX=$((CW1 - CW0))
    CPU_CLIENT=$((BENCH_CHILD_TICKS - CK0))
    CPU_REST=$(awk -v t=$((b1 - CB0 - CPU_NGINX - CPU_CLIENT)) \
        -v tck="$BENCH_TCK" -v a="$CT0" -v b="$t1" \
        'BEGIN { x = t / tck / (b - a); printf "%.2f", (x > 0) ? x : 0 }')
}

delete_object() {
    local code

    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE \
                "http://127.0.0.1:$BENCH_PORT/$1") \
        || bench_die "DELETE $1 failed"
    [ "$code" = 204 ] || bench_die "DELETE $1: HTTP $code"
    [ ! -e "$OBJ_DIR/${1#*/}" ] || bench_die "DELETE $1 left its file"
}

check_object() {
    local size

    size=$(stat -c %s "$OBJ_DIR/$1" 2>/dev/null) \
        || bench_die "$1: no object at $OBJ_DIR/$1"
    [ "$size" = "$SIZE" ] || bench_die "$1: stored $size bytes, not $SIZE"
}

# A whole PUT to case upload or md5: T_TOTAL (s)
run_put() {
    bench_quiet
    cpu_begin
    bench_upload "$1"
    cpu_end
    T_TOTAL=$(f3 "$UP_TIME")
    case $UP_BODY in
    *"\"sha256\":\"$BENCH_SHA256\""*) ;;
    *) bench_die "put ($1): not the file's sha256 in: $UP_BODY" ;;
    esac
    check_object "obj-$1"
    delete_object "$1/obj-$1"
}

# A sliced upload to key KEY, parts in ORDER (asc, desc), CP (1: the cp
# before the complete), STRACE (its output, or -): T_TOTAL, T_PARTS,
# T_COMPLETE (s), T_CLIENT_CPU (s), nginx's CPU (ticks) during the parts
# (CPU_PARTS) and the complete (CPU_COMPLETE), and with CP, T_CP, T_CPSYNC
run_sliced() {
    local key=$1 order=$2 copy=$3 trace=$4 hook_ticks

    [ "$copy" = 1 ] && copy=$COPY_FILE || copy=-
    rm -f "$TICKS_FILE" "$TICKS_FILE.cp"

    bench_quiet
    cpu_begin
    "$PYTHON" "$CLIENT" upload "$URL/$key" "$BENCH_FILE" \
        --part-size "$PART" --connections "$CONNECTIONS" --order "$order" \
        --sha256 "$BENCH_SHA256" \
        --before-complete "DATA='$BENCH_FILE' bash '$HERE/sliced.sh' --hook '$NGX_WORKER' '$TICKS_FILE' '$copy' '$trace' '$STRACE_PIDFILE'" \
        > "$BENCH_DIR/client.json" \
        || bench_die "sliced upload ($order) failed: $(cat "$BENCH_DIR/client.json")"
    cpu_end
    stop_strace

    T_TOTAL=$(f3 "$(jnum t_total)")
    T_PARTS=$(f3 "$(jnum t_parts)")
    T_COMPLETE=$(f3 "$(jnum t_complete)")
    T_CLIENT_CPU=$(jnum client_cpu)
    hook_ticks=$(cat "$TICKS_FILE")
    CPU_PARTS=$((hook_ticks - CW0))
    CPU_COMPLETE=$((CW1 - hook_ticks))
    if [ "$copy" != - ]; then
        read -r T_CP T_CPSYNC < "$TICKS_FILE.cp"
    fi
    [ "$(jstr sha256)" = "$BENCH_SHA256" ] \
        || bench_die "sliced ($order): sha256 $(jstr sha256)"
    check_object "$key"
}

# cp of object KEY to a new file, then sync of the copy: T_CP, T_CPSYNC (s)
run_cp() {
    local t0 t1 t2

    t0=$EPOCHREALTIME
    cp "$OBJ_DIR/$1" "$COPY_FILE"
    t1=$EPOCHREALTIME
    sync "$COPY_FILE"
    t2=$EPOCHREALTIME
    rm -f "$COPY_FILE"
    T_CP=$(sub "$t1" "$t0")
    T_CPSYNC=$(sub "$t2" "$t0")
}

# SHA-256 of object KEY from the page cache, checked: T_SHA (s)
run_sha() {
    local t0 t1 sum

    t0=$EPOCHREALTIME
    sum=$(openssl dgst -sha256 -r "$OBJ_DIR/$1" | cut -c1-64)
    t1=$EPOCHREALTIME
    [ "$sum" = "$BENCH_SHA256" ] || bench_die "$1: the stored object is not the file"
    T_SHA=$(sub "$t1" "$t0")
}

# --- the client alone ----------------------------------------------------------

echo
echo "== the client alone: $NPARTS parts of $PART_MIB MiB over $CONNECTIONS connections to a sink that drops them (no nginx)"
"$PYTHON" "$CLIENT" sink "$SINK_PORT" &
SINK_PID=$!
for _ in $(seq 50); do
    bench_port_busy "$SINK_PORT" && break
    sleep 0.1
done
sink=()
sink_cpu=()
for i in 1 2 3; do
    "$PYTHON" "$CLIENT" upload "http://127.0.0.1:$SINK_PORT/sink/x" \
        "$BENCH_FILE" --part-size "$PART" --connections "$CONNECTIONS" \
        --sink > "$BENCH_DIR/client.json" || bench_die "sink upload failed"
    sink+=("$(jnum t_parts)")
    sink_cpu+=("$(jnum client_cpu)")
    echo "run $i: parts $(f3 "$(jnum t_parts)") s ($(mibs "$SIZE" "$(jnum t_parts)") MiB/s), client CPU $(jnum client_cpu) s"
done
kill "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=

# --- warm-up -------------------------------------------------------------------

echo
echo "== warm-up: one of each (checked: size on disk, sha256 in the answer)"
run_put upload
echo "put     total $T_TOTAL s"
run_put md5
echo "put md5 total $T_TOTAL s"
run_sliced obj-asc asc 0 -
echo "asc     total $T_TOTAL s (parts $T_PARTS, complete $T_COMPLETE); etag $(jstr etag)"
delete_object upload/obj-asc
run_sliced obj-desc desc 0 -
echo "desc    total $T_TOTAL s (parts $T_PARTS, complete $T_COMPLETE)"
delete_object upload/obj-desc

# --- rounds --------------------------------------------------------------------

declare -A T=()     # case -> " s s s"
declare -A C=()     # CPU: case -> " x x x"

add() {
    T[$1]="${T[$1]:-} $2"
}

addc() {
    C[$1]="${C[$1]:-} $2"
}

# a sliced case of a round: its figures under NAME
sliced_case() {
    local name=$1

    shift
    run_sliced "$@"
    add "$name" "$T_TOTAL"
    add "${name}_parts" "$T_PARTS"
    add "${name}_complete" "$T_COMPLETE"
    addc "${name}_parts" "$(per_gib "$CPU_PARTS")"
    addc "${name}_complete" "$(per_gib "$CPU_COMPLETE")"
    addc "${name}_client" "$(awk -v c="$T_CLIENT_CPU" -v s="$BENCH_SIZE_MIB" \
        'BEGIN { printf "%.2f", c / (s / 1024) }')"
    addc "${name}_rest" "$CPU_REST"
    line="$line | $name $T_TOTAL ($T_PARTS + $T_COMPLETE)"
}

echo
echo "== $ROUNDS rounds (seconds; sliced: total (parts + complete))"
for r in $(seq "$ROUNDS"); do
    line="round $r:"

    run_put upload
    add put "$T_TOTAL"
    addc put_nginx "$(per_gib "$CPU_NGINX")"
    addc put_client "$(per_gib "$CPU_CLIENT")"
    addc put_rest "$CPU_REST"
    line="$line put $T_TOTAL"

    run_put md5
    add md5 "$T_TOTAL"
    addc md5_nginx "$(per_gib "$CPU_NGINX")"
    line="$line | put md5 $T_TOTAL"

    sliced_case asc obj-asc asc 0 -
    # the parts' page cache was just freed: cp writes into warm memory
    run_cp obj-asc
    add cphot "$T_CP"
    add cphotsync "$T_CPSYNC"
    run_sha obj-asc
    add sha "$T_SHA"
    delete_object upload/obj-asc
    line="$line | cp hot $T_CP (+sync $T_CPSYNC) | sha256 $T_SHA"

    sliced_case asc+cp obj-asc asc 1 -
    add cpcold "$T_CP"
    add cpcoldsync "$T_CPSYNC"
    delete_object upload/obj-asc
    line="$line [cp $T_CP, +sync $T_CPSYNC]"

    sliced_case desc obj-desc desc 0 -
    delete_object upload/obj-desc

    sliced_case desc+cp obj-desc desc 1 -
    add cpcold "$T_CP"
    add cpcoldsync "$T_CPSYNC"
    delete_object upload/obj-desc
    line="$line [cp $T_CP, +sync $T_CPSYNC]"

    echo "$line"
done

# --- where one complete's time goes (strace) -----------------------------------

# phases of the complete in an strace -f -ttt -T output: calls start at
# their timestamp and last <d>; "<unfinished ...>" / "resumed>" pairs joined.
# Prints "phase span in-calls count" lines.
breakdown() {
    awk '
        function call(name, start, dur,   end) {
            end = start + dur
            if (!(name in first) || start < first[name]) first[name] = start
            if (!(name in last) || end > last[name]) last[name] = end
            sum[name] += dur
            cnt[name]++
        }
        {
            pid = $1; ts = $2
            if ($0 ~ /<unfinished \.\.\.>$/) {
                split($3, a, "("); pts[pid] = ts; next
            }
            if (!match($0, /<[0-9.]+>$/)) next
            dur = substr($0, RSTART + 1, RLENGTH - 2)
            if ($3 == "<...") { name = $4; start = pts[pid] }
            else { split($3, a, "("); name = a[1]; start = ts }
            if (name == "unlinkat") name = "unlink"
            if (name == "renameat" || name == "renameat2") name = "rename"
            call(name, start, dur)
        }
        END {
            printf "copy %.3f %.3f %d\n", last["copy_file_range"] - first["copy_file_range"], sum["copy_file_range"], cnt["copy_file_range"]
            printf "hash %.3f %.3f %d\n", last["pread64"] - first["pread64"], sum["pread64"], cnt["pread64"]
            printf "fsync %.3f %.3f %d\n", sum["fsync"], sum["fsync"], cnt["fsync"]
            printf "rename %.3f %.3f %d\n", sum["rename"], sum["rename"], cnt["rename"]
            printf "unlink %.3f %.3f %d\n", last["unlink"] - first["unlink"], sum["unlink"], cnt["unlink"]
        }' "$1"
}

declare -A BD=()
if [ "$BREAKDOWN" = 1 ] && command -v strace >/dev/null; then
    echo
    echo "== two more sliced uploads (asc), their complete under strace -f on the worker"
    for w in 0 1; do
        trace=$BENCH_DIR/complete-$w.strace
        rm -f "$trace"
        run_sliced obj-asc asc "$w" "$trace"
        delete_object upload/obj-asc
        BD[$w]="all $T_COMPLETE $T_COMPLETE 1
$(breakdown "$trace")"
        [ "$w" = 1 ] && echo "after a cp:" || echo "as it comes:"
        echo "${BD[$w]}" | awk '{ printf "  %-7s %s s (in the calls %s s, %d calls)\n", $1, $2, $3, $4 }'
    done
fi

echo "load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (at end)"

# --- the tables ------------------------------------------------------------------

declare -A MED=()

row() {     # label key
    local m lo hi

    # shellcheck disable=SC2086
    read -r m lo hi <<< "$(stats ${T[$2]})"
    printf '%-50s %7s %7s %7s %7s\n' "$1" "$m" "$lo" "$hi" "$(mibs "$SIZE" "$m")"
    MED[$2]=$m
}

echo
echo "== results: $ROUNDS rounds, $BENCH_SIZE_MIB MiB, $NPARTS parts of $PART_MIB MiB, $CONNECTIONS connections; seconds"
printf '%-50s %7s %7s %7s %7s\n' case median min max MiB/s
row "whole PUT (curl -T)" put
row "whole PUT, upload_hash md5 sha256 (/md5/)" md5
row "sliced, parts in order: total" asc
row "  parts (4 connections)" asc_parts
row "  complete" asc_complete
row "sliced, parts in reverse order: total" desc
row "  parts" desc_parts
row "  complete" desc_complete
row "sliced, in order, cp before complete: total" asc+cp
row "  complete" asc+cp_complete
row "sliced, reverse, cp before complete: total" desc+cp
row "  complete" desc+cp_complete
row "cp cold (in place of asc's/desc's complete)" cpcold
row "  then sync of the copy (cp + sync)" cpcoldsync
row "cp hot (of the object, right after a complete)" cphot
row "  then sync of the copy (cp + sync)" cphotsync
row "openssl dgst -sha256 of the object (page cache)" sha
read -r m lo hi <<< "$(stats "${sink[@]}")"
printf '%-50s %7s %7s %7s %7s\n' "client alone: the parts to a sink (no nginx)" \
    "$m" "$lo" "$hi" "$(mibs "$SIZE" "$m")"

echo
echo "   CPU, medians: cpu-s per GiB of nginx's worker (event loop + pool) and of"
echo "   the client; the rest of the machine meanwhile, in cores (of $(nproc))"
printf '%-50s %7s %7s %7s\n' "" nginx client others
# shellcheck disable=SC2086
printf '%-50s %7s %7s %7s\n' "whole PUT (curl)" "$(median ${C[put_nginx]})" \
    "$(median ${C[put_client]})" "$(median ${C[put_rest]})"
# shellcheck disable=SC2086
printf '%-50s %7s\n' "whole PUT, md5 + sha256" "$(median ${C[md5_nginx]})"
for k in asc desc; do
    # shellcheck disable=SC2086
    printf '%-50s %7s %7s %7s\n' "sliced, $k: parts" \
        "$(median ${C[${k}_parts]})" "$(median ${C[${k}_client]})" \
        "$(median ${C[${k}_rest]})"
    # shellcheck disable=SC2086
    printf '%-50s %7s\n' "sliced, $k: complete" "$(median ${C[${k}_complete]})"
done
for k in asc desc; do
    # shellcheck disable=SC2086
    printf '%-50s %7s\n' "sliced, $k, cp before: complete" \
        "$(median ${C[${k}+cp_complete]})"
done
printf '%-50s %7s %7s\n' "client alone, to the sink" "" \
    "$(awk -v c="$(median "${sink_cpu[@]}")" -v s="$BENCH_SIZE_MIB" \
        'BEGIN { printf "%.2f", c / (s / 1024) }')"

if [ -n "${BD[0]:-}" ]; then
    echo
    echo "   one complete (in order) under strace, as it comes / after a cp:"
    paste -d' ' <(echo "${BD[0]}") <(echo "${BD[1]}") | awk '
        $1 == "all"    { a0 = $2; a1 = $6; next }
        $1 == "copy"   { lab = "copy (copy_file_range x " $4 ")" }
        $1 == "hash"   { lab = "SHA-256 pass (pread 1 MiB x " $4 ")" }
        $1 == "fsync"  { lab = "fsync x " $4 " (merged file, its directory)" }
        $1 == "rename" { lab = "rename" }
        $1 == "unlink" { lab = "remove the parts (unlink x " $4 ")" }
        { printf "   %-47s %6.3f s %3.0f%%   %6.3f s %3.0f%%\n", lab, $2, 100 * $2 / a0, $6, 100 * $6 / a1; u0 += $2; u1 += $6 }
        END {
            printf "   %-47s %6.3f s %3.0f%%   %6.3f s %3.0f%%\n", "the rest (Redis, event loop, hand-offs)", a0 - u0, 100 * (a0 - u0) / a0, a1 - u1, 100 * (a1 - u1) / a1
            printf "   %-47s %6.3f s        %6.3f s\n", "complete, in all", a0, a1
        }'
fi

echo
printf '%-50s %7s %7s %7s\n' target ratio goal ""
target() {  # label a b goal
    local q

    q=$(ratio "$2" "$3")
    printf '%-50s %7s %7s %7s\n' "$1" "$q" "<= $4" "$(verdict "$q" "$4")"
}
target "sliced total (in order) / whole PUT" "${MED[asc]}" "${MED[put]}" 1.3
target "sliced total (reverse) / whole PUT" "${MED[desc]}" "${MED[put]}" 1.3
target "complete (in order) / cp cold" "${MED[asc_complete]}" "${MED[cpcold]}" 0.5
target "complete (reverse) / cp cold" "${MED[desc_complete]}" "${MED[cpcold]}" 0.5
target "complete (in order, after cp) / cp hot" "${MED[asc+cp_complete]}" "${MED[cphot]}" 0.5
target "complete (reverse, after cp) / cp hot" "${MED[desc+cp_complete]}" "${MED[cphot]}" 0.5
echo "(info: complete (in order) / (cp cold + sync): $(ratio "${MED[asc_complete]}" "${MED[cpcoldsync]}");" \
     "after cp / (cp hot + sync): $(ratio "${MED[asc+cp_complete]}" "${MED[cphotsync]}");" \
     "sliced parts alone (in order) / whole PUT: $(ratio "${MED[asc_parts]}" "${MED[put]}"))"

exit 0
