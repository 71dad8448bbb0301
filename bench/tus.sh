#!/usr/bin/env bash
# A whole upload through the module against tus (@tus/server with
# @tus/file-store, on Node.js): the same file, the same curl, in one run
# (docs/performance.md, "Against tus").  A measurement, not a test: it
# exits 0 whatever the figures, and non-zero only when something broke.
#
#   make && bench/tus.sh
#
# Needs node (>= 20.19) and npm: the first run installs @tus/server@2 and
# @tus/file-store@2 into build/bench/tus/ (npm install, from the registry);
# later runs reuse them.  Uploads BENCH_SIZE_MIB (512) MiB of random data
# (bench/lib.sh's data file, build/bench/data-512M.bin) as:
#   (a)   PUT to the module as shipped (sha256, upload_fsync on)
#   (d)   PUT to the module with upload_fsync off
#   tus   POST /files (Upload-Length) then one PATCH of the whole file to a
#         tus server (Server + FileStore in build/bench/tus/files: no
#         digest, no fsync), single process, on TUS_PORT
# all with curl -T over HTTP/1.1 to 127.0.0.1; one warm-up of each
# (checked: the module's sha256, the size and SHA-256 of tus's file), then
# ROUNDS (3) rounds of a, d, tus, each after a `sync`, each object deleted
# once measured.  Prints MiB/s (the size over curl's time; for tus, over
# the POST and the PATCH together; tus+: with an fsync of tus's file after
# it, which (a) does and tus does not), their medians, and the module's
# ratios to tus (info: the issue sets no target).
#
# Environment:
#   ROUNDS     rounds (3)
#   TUS_PORT   the tus server's port (8805)
#   NODE, NPM  node and npm (from PATH)
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/tus), BENCH_PORT (8806), REDIS_PORT (6404); BENCH_SIZE_MIB.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/tus}
BENCH_PORT=${BENCH_PORT:-8806}
REDIS_PORT=${REDIS_PORT:-6404}

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

ROUNDS=${ROUNDS:-3}
TUS_PORT=${TUS_PORT:-8805}
NODE=${NODE:-node}
NPM=${NPM:-npm}

case $ROUNDS in
''|*[!0-9]*|0) bench_die "ROUNDS must be a positive number" ;;
esac
command -v "$NODE" >/dev/null || bench_die "no $NODE"
command -v "$NPM" >/dev/null || bench_die "no $NPM"

TUS_DIR=$BENCH_DIR/files
TUS_PID=

# shellcheck disable=SC2317  # (the traps call it)
cleanup() {
    if [ -n "$TUS_PID" ] && proc_alive "$TUS_PID"; then
        kill "$TUS_PID" 2>/dev/null || true
        wait "$TUS_PID" 2>/dev/null || true
    fi
    rm -rf "$TUS_DIR"
    bench_stop
}

trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_DIR"

if [ ! -f "$BENCH_DIR/node_modules/@tus/server/package.json" ] \
   || [ ! -f "$BENCH_DIR/node_modules/@tus/file-store/package.json" ]
then
    echo "bench: npm install @tus/server@2 @tus/file-store@2 into $BENCH_DIR"
    [ -f "$BENCH_DIR/package.json" ] || echo '{"private": true}' > "$BENCH_DIR/package.json"
    (cd "$BENCH_DIR" && "$NPM" install --no-audit --no-fund --loglevel=error \
         @tus/server@2 @tus/file-store@2) \
        || bench_die "npm install failed"
fi

cat > "$BENCH_DIR/server.mjs" <<'JS'
// Written by bench/tus.sh: a tus server storing files on disk, as in
// @tus/server's README.
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, dir] = process.argv.slice(2);
const server = new Server({
  path: "/files",
  datastore: new FileStore({ directory: dir }),
});
server.listen({ host: "127.0.0.1", port: Number(port) });
JS

# the data file of bench/put.sh, shared
dir=$BENCH_DIR
BENCH_DIR=$BENCH_ROOT/build/bench
mkdir -p "$BENCH_DIR"
bench_data
BENCH_DIR=$dir
SIZE=$((BENCH_SIZE_MIB * 1048576))

echo "== machine"
bench_machine
echo "node:       $("$NODE" --version), @tus/server $("$NODE" -p "require('$BENCH_DIR/node_modules/@tus/server/package.json').version"), @tus/file-store $("$NODE" -p "require('$BENCH_DIR/node_modules/@tus/file-store/package.json').version")"
echo "data:       $BENCH_FILE ($BENCH_SIZE_MIB MiB)"

bench_port_busy "$TUS_PORT" && bench_die "127.0.0.1:$TUS_PORT is taken: set TUS_PORT"
mkdir -p "$TUS_DIR"
"$NODE" "$BENCH_DIR/server.mjs" "$TUS_PORT" "$TUS_DIR" \
    > "$BENCH_DIR/server.log" 2>&1 &
TUS_PID=$!

bench_start a d
for _ in $(seq 50); do
    bench_port_busy "$TUS_PORT" && break
    proc_alive "$TUS_PID" || bench_die "the tus server died: $(cat "$BENCH_DIR/server.log")"
    sleep 0.1
done
bench_port_busy "$TUS_PORT" || bench_die "the tus server does not listen"

# One tus upload: POST, then a PATCH of the whole file.  Sets UP_SPEED
# (bytes/s over both), UP_TIME, TUS_FILE.
tus_upload() {
    local post loc code speed t

    post=$(curl -sS -o /dev/null -D - -X POST \
                -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $SIZE" \
                -w '\n%{http_code} %{time_total}' \
                "http://127.0.0.1:$TUS_PORT/files") \
        || bench_die "tus POST failed"
    read -r code t <<< "$(tail -n 1 <<< "$post")"
    [ "$code" = 201 ] || bench_die "tus POST answered $code"
    loc=$(tr -d '\r' <<< "$post" | awk 'tolower($1) == "location:" { print $2 }')
    case $loc in
    http*) ;;
    /*) loc=http://127.0.0.1:$TUS_PORT$loc ;;
    *) bench_die "tus POST: no Location" ;;
    esac
    read -r code speed UP_TIME <<< "$(curl -sS -o "$BENCH_DIR/answer" -X PATCH \
        -T "$BENCH_FILE" -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
        -H 'Content-Type: application/offset+octet-stream' \
        -w '%{http_code} %{speed_upload} %{time_total}' "$loc")" \
        || bench_die "tus PATCH failed"
    [ "$code" = 204 ] || bench_die "tus PATCH answered $code: $(cat "$BENCH_DIR/answer")"
    UP_TIME=$(awk -v a="$t" -v b="$UP_TIME" 'BEGIN { print a + b }')
    UP_SPEED=$(awk -v s="$SIZE" -v t="$UP_TIME" 'BEGIN { print s / t }')
    TUS_FILE=$TUS_DIR/${loc##*/}
}

mib() {
    awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}

echo
echo "== warm-up: one upload of each"
for c in a d tus; do
    bench_quiet
    if [ "$c" = tus ]; then
        tus_upload
        [ "$(stat -c %s "$TUS_FILE")" = "$SIZE" ] || bench_die "tus stored $(stat -c %s "$TUS_FILE") bytes"
        [ "$(sha256sum < "$TUS_FILE" | cut -d' ' -f1)" = "$BENCH_SHA256" ] \
            || bench_die "tus stored other bytes"
        rm -f "$TUS_FILE" "$TUS_FILE.json"
    else
        bench_upload "$c"
        case $UP_BODY in
        *"\"sha256\":\"$BENCH_SHA256\""*) ;;
        *) bench_die "case $c: not the file's sha256 in: $UP_BODY" ;;
        esac
        rm -f "$(bench_object "$c")"
    fi
    printf '%-6s %8s MiB/s\n' "$c" "$(mib "$UP_SPEED")"
done

echo
echo "== $ROUNDS rounds of: a d tus  (MiB/s)"
declare -A speed=()
durable=()
for r in $(seq "$ROUNDS"); do
    line="round $r:"
    for c in a d tus; do
        bench_quiet
        if [ "$c" = tus ]; then
            tus_upload
            # made as durable as (a): its fsync, timed apart
            t0=$EPOCHREALTIME
            sync "$TUS_FILE"
            durable+=("$(awk -v s="$SIZE" -v u="$UP_TIME" -v a="$t0" \
                             -v b="$EPOCHREALTIME" \
                             'BEGIN { printf "%.1f", s / 1048576 / (u + b - a) }')")
            rm -f "$TUS_FILE" "$TUS_FILE.json"
        else
            bench_upload "$c"
            rm -f "$(bench_object "$c")"
        fi
        speed[$c]="${speed[$c]:-} $(mib "$UP_SPEED")"
        line="$line  $c $(mib "$UP_SPEED")"
    done
    echo "$line"
done

stats() {
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f %.1f %.1f", m, v[1], v[NR]
        }'
}

echo
echo "== results: $ROUNDS rounds, $BENCH_SIZE_MIB MiB per upload, MiB/s"
printf '%-46s %8s %8s %8s\n' case median min max
declare -A med=()
for c in a d tus; do
    # shellcheck disable=SC2086
    read -r m lo hi <<< "$(stats ${speed[$c]})"
    med[$c]=$m
    case $c in
    a) d="(a) module, sha256, fsync on (default)" ;;
    d) d="(d) module, sha256, upload_fsync off" ;;
    tus) d="tus: @tus/server + file-store, POST + PATCH" ;;
    esac
    printf '%-46s %8s %8s %8s\n' "$d" "$m" "$lo" "$hi"
done
read -r m lo hi <<< "$(stats "${durable[@]}")"
med[tus+]=$m
printf '%-46s %8s %8s %8s\n' "(tus+) tus, then fsync of the file" "$m" "$lo" "$hi"
echo
printf '%-46s %8s %8s\n' target ratio goal
printf '%-46s %8s %8s\n' "(a) / tus" "$(awk -v x="${med[a]}" -v y="${med[tus]}" 'BEGIN { printf "%.2f", x / y }')" "(info)"
printf '%-46s %8s %8s\n' "(a) / (tus+)" "$(awk -v x="${med[a]}" -v y="${med[tus+]}" 'BEGIN { printf "%.2f", x / y }')" "(info)"
printf '%-46s %8s %8s\n' "(d) / tus" "$(awk -v x="${med[d]}" -v y="${med[tus]}" 'BEGIN { printf "%.2f", x / y }')" "(info)"
exit 0
