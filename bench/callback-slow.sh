#!/usr/bin/env bash
# Do uploads waiting on a slow app stall the worker?  Throughput and latency
# of an unrelated location while IN_FLIGHT (200) uploads wait for a post
# callback that answers after CALLBACK_MS (1000) ms, against the same
# location without the uploads, on one nginx worker, in one run
# (docs/performance.md, "Slow callbacks").  A measurement, not a test: it
# exits 0 whatever the figures, and non-zero only when something broke.
#
#   make && bench/callback-slow.sh
#
# One nginx (bench/lib.sh: worker_processes 1) with
#   /static/            return 200 "ok";  (the measured location)
#   /up/                upload on; upload_callback /_upload_callback;
#   /apps/              upload_register on;
#   /_upload_callback   proxy_pass $upload_callback_url, as in
#                       conf/nginx.conf (proxy_read_timeout 10s)
# and an app server (Python 3, a thread per connection, written to
# BENCH_DIR/slow_app.py) on CALLBACK_PORT that answers /slow?ms=N after N
# ms.  The app "slow" is registered through /apps/ with
# callback_url_post http://127.0.0.1:CALLBACK_PORT/slow?ms=CALLBACK_MS.
# The upload client (Python 3 asyncio, BENCH_DIR/upload_loop.py) keeps
# IN_FLIGHT keep-alive connections, each PUTting BODY_BYTES (1024) random
# bytes to /up/ with X-Upload-App: slow, one after another: every answer
# must be 201 with "callback":{"status":200.  Runs, each wrk -t1 -c8
# -d$DURATION --latency on /static/, in each of ROUNDS rounds:
#   baseline  no uploads
#   slow      IN_FLIGHT uploads waiting on the slow callback
#   control   the same number of uploads a second as "slow" made, to the
#             default app (no callback): what the uploads cost by
#             themselves, without the wait (info)
# Target: /static/ unaffected by the waiting uploads: slow / baseline
# >= 0.90 in req/s (TARGET_RATIO) and a p99 < 20 ms (TARGET_MS), on the
# medians of the rounds (the rounds interleave the three, so that a change
# of the machine's load over the run falls on all three); the control
# shows how much of any difference the uploads' own work explains.
#
# Environment:
#   ROUNDS         rounds (3)
#   IN_FLIGHT      uploads kept waiting (200)
#   CALLBACK_MS    the app's delay (1000)
#   BODY_BYTES     the size of each upload (1024)
#   DURATION       wrk's -d (10s); CONNECTIONS: -c (8); THREADS: -t (1)
#   CALLBACK_PORT  the app server's port (8804)
#   TARGET_RATIO, TARGET_MS  (0.90, 20)
#   PYTHON         python3
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/callback-slow), BENCH_PORT (8803), REDIS_PORT (6403).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/callback-slow}
BENCH_PORT=${BENCH_PORT:-8803}
REDIS_PORT=${REDIS_PORT:-6403}

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

IN_FLIGHT=${IN_FLIGHT:-200}
CALLBACK_MS=${CALLBACK_MS:-1000}
BODY_BYTES=${BODY_BYTES:-1024}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-1}
CALLBACK_PORT=${CALLBACK_PORT:-8804}
TARGET_RATIO=${TARGET_RATIO:-0.90}
TARGET_MS=${TARGET_MS:-20}
PYTHON=${PYTHON:-python3}
ROUNDS=${ROUNDS:-3}

for v in ROUNDS IN_FLIGHT BODY_BYTES CONNECTIONS THREADS CALLBACK_PORT TARGET_MS; do
    case ${!v} in
    ''|*[!0-9]*|0) bench_die "$v must be a positive number" ;;
    esac
done
case $CALLBACK_MS in
''|*[!0-9]*) bench_die "CALLBACK_MS must be a number" ;;
esac

command -v wrk >/dev/null || bench_die "no wrk: apt-get install wrk"
command -v "$PYTHON" >/dev/null || bench_die "no $PYTHON: run \`make deps\`"

CASE_DESC[static]="return 200 (the measured location)"
CASE_CONF[static]="return 200 \"ok\";"
CASE_DESC[up]="module, sha256, fsync on, callbacks"
CASE_CONF[up]="upload on; upload_callback /_upload_callback;"
BENCH_WORKER_CONNECTIONS=4096
BENCH_MAIN_CONF="worker_rlimit_nofile 16384;"
BENCH_SERVER_CONF="
        location /apps/ {
            upload_register on;
            allow 127.0.0.1;
            deny all;
        }

        location = /_upload_callback {
            internal;
            proxy_pass \$upload_callback_url;
            proxy_method POST;
            proxy_set_body \$upload_callback_body;
            proxy_connect_timeout 3s;
            proxy_read_timeout 10s;
        }"

APP=$BENCH_DIR/slow_app.py
CLIENT=$BENCH_DIR/upload_loop.py
APP_PID=
CLIENT_PID=

# shellcheck disable=SC2317  # (the traps call it)
cleanup() {
    local p

    for p in $CLIENT_PID $APP_PID; do
        if proc_alive "$p"; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    bench_stop
    rm -rf "$BENCH_DIR/store/slow"
}

trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_DIR"

cat > "$APP" <<'PY'
# Written by bench/callback-slow.sh: an app that answers /slow?ms=N after
# N ms, one thread per connection.
import http.server, json, sys, threading, time, urllib.parse

count = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_any(self):
        global count
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/count":
            body = json.dumps({"count": count}).encode()
        else:
            time.sleep(int(q.get("ms", ["0"])[0]) / 1000)
            with lock:
                count += 1
            body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_any

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY

cat > "$CLIENT" <<'PY'
# Written by bench/callback-slow.sh: N connections, each PUTting a body to
# PREFIX<key> again and again (HTTP/1.1 keep-alive) until the file STOP
# exists; at most RATE uploads a second in all (0: no limit).  Writes
# READY once every connection has sent its first upload, and a JSON
# summary at the end.
import asyncio, json, os, sys, time

(host, port, prefix, app, n, size, rate, ready, stop) = sys.argv[1:10]
port, n, size, rate = int(port), int(n), int(size), float(rate)
codes, lat, bad = {}, [], []
inflight = 0
started = 0
samples = []
next_slot = [0.0]


async def slot():
    if rate <= 0:
        return
    now = time.monotonic()
    t = max(now, next_slot[0])
    next_slot[0] = t + 1 / rate
    if t > now:
        await asyncio.sleep(t - now)


async def conn(w_id, first):
    global inflight, started
    r, w = await asyncio.open_connection(host, port)
    i = 0
    while not os.path.exists(stop):
        await slot()
        i += 1
        head = ("PUT %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                % (prefix, "c%d-%d" % (w_id, i), host, size))
        if app:
            head += "X-Upload-App: %s\r\n" % app
        t = time.monotonic()
        w.write((head + "\r\n").encode() + os.urandom(size))
        inflight += 1
        if i == 1:
            started += 1
            if started == n:
                open(ready, "w").close()
        status = await r.readline()
        length = 0
        close = False
        while True:
            line = await r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            if k.lower() == "connection" and "close" in v.lower():
                close = True
        body = await r.readexactly(length) if length else b""
        inflight -= 1
        lat.append(time.monotonic() - t)
        code = status.split(b" ")[1].decode() if status else "none"
        codes[code] = codes.get(code, 0) + 1
        if code != "201" or (app and b'"callback":{"status":200' not in body):
            bad.append((code, body[:200].decode("utf-8", "replace")))
        if close or not status:
            w.close()
            r, w = await asyncio.open_connection(host, port)
    w.close()


async def sampler():
    while not os.path.exists(stop):
        samples.append(inflight)
        await asyncio.sleep(0.5)


async def main():
    t0 = time.monotonic()
    s = asyncio.ensure_future(sampler())
    tasks = []
    for k in range(n):
        tasks.append(asyncio.ensure_future(conn(k, 0)))
        if k % 50 == 49:
            await asyncio.sleep(0.05)
    res = await asyncio.gather(*tasks, return_exceptions=True)
    await s
    t = time.monotonic() - t0
    errs = [repr(e) for e in res if isinstance(e, BaseException)]
    lat.sort()
    busy = sorted(samples[4:]) or [0]
    print(json.dumps({
        "uploads": len(lat), "seconds": round(t, 2),
        "per_s": round(len(lat) / t, 1), "codes": codes,
        "bad": len(bad), "bad_first": bad[:3], "errors": errs[:3],
        "n_errors": len(errs),
        "in_flight_median": busy[len(busy) // 2], "in_flight_min": busy[0],
        "answer_p50_s": round(lat[len(lat) // 2], 3) if lat else -1,
        "answer_max_s": round(lat[-1], 3) if lat else -1}))

asyncio.run(main())
PY

echo "== machine"
bench_machine
echo "wrk:        -t$THREADS -c$CONNECTIONS -d$DURATION --latency, GET /static/"
echo "uploads:    $IN_FLIGHT keep-alive connections ($("$PYTHON" --version 2>&1) asyncio), PUT of $BODY_BYTES bytes, X-Upload-App: slow"
echo "app:        post callback answered after $CALLBACK_MS ms (Python ThreadingHTTPServer on 127.0.0.1:$CALLBACK_PORT)"

bench_port_busy "$CALLBACK_PORT" \
    && bench_die "127.0.0.1:$CALLBACK_PORT is taken: set CALLBACK_PORT"
"$PYTHON" "$APP" "$CALLBACK_PORT" &
APP_PID=$!

bench_start static up
for _ in $(seq 50); do
    bench_port_busy "$CALLBACK_PORT" && break
    sleep 0.1
done

code=$(curl -sS -o "$BENCH_DIR/answer" -w '%{http_code}' \
            "http://127.0.0.1:$BENCH_PORT/apps/" \
            -d "{\"appid\":\"slow\",\"callback_url_post\":\"http://127.0.0.1:$CALLBACK_PORT/slow?ms=$CALLBACK_MS\",\"secret\":\"bench\"}")
[ "$code" = 201 ] || bench_die "registering the app: $code $(cat "$BENCH_DIR/answer")"

# one upload: stored, the callback's answer in the client's
head -c "$BODY_BYTES" /dev/urandom > "$BENCH_DIR/body.bin"
out=$(curl -sS -w ' %{http_code} %{time_total}' -T "$BENCH_DIR/body.bin" \
           -H 'X-Upload-App: slow' "http://127.0.0.1:$BENCH_PORT/up/check")
case $out in
*'"callback":{"status":200'*' 201 '*) ;;
*) bench_die "an upload with the slow callback answered: $out" ;;
esac
echo "check:      one upload answered 201 with the app's answer after ${out##* } s"
wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$BENCH_PORT/static/" > /dev/null

URL=http://127.0.0.1:$BENCH_PORT/static/
WOPTS=(-t"$THREADS" -c"$CONNECTIONS" -d"$DURATION")

# run NAME APP RATE N: wrk on /static/ while N connections upload
# (N = 0: no uploads); sets W_RPS W_P99 W_MAX CPU (the worker's, in cores)
# and, with uploads, SUMMARY (the client's JSON)
run() {
    local name=$1 app=$2 rate=$3 n=$4 m0 p0 m1 p1 t0 t1 bad err

    rm -f "$BENCH_DIR/ready" "$BENCH_DIR/stop"
    SUMMARY=
    if [ "$n" -gt 0 ]; then
        "$PYTHON" "$CLIENT" 127.0.0.1 "$BENCH_PORT" /up/ "$app" "$n" \
            "$BODY_BYTES" "$rate" "$BENCH_DIR/ready" "$BENCH_DIR/stop" \
            > "$BENCH_DIR/client-$name.json" &
        CLIENT_PID=$!
        for _ in $(seq 300); do
            [ -e "$BENCH_DIR/ready" ] && break
            proc_alive "$CLIENT_PID" || bench_die "the upload client died"
            sleep 0.1
        done
        [ -e "$BENCH_DIR/ready" ] || bench_die "the uploads did not start"
        # past the first wave: the connections in their steady state
        sleep 2
    fi
    read -r m0 p0 <<< "$(bench_worker_ticks)"
    t0=$EPOCHREALTIME
    read -r W_RPS W_P99 bad err W_MAX <<< \
        "$(bench_wrk "$BENCH_DIR/wrk-$name.txt" "$URL" "${WOPTS[@]}")"
    t1=$EPOCHREALTIME
    read -r m1 p1 <<< "$(bench_worker_ticks)"
    CPU=$(awk -v t=$((m1 - m0 + p1 - p0)) -v k="$BENCH_TCK" -v a="$t0" -v b="$t1" \
              'BEGIN { printf "%.2f", t / k / (b - a) }')
    if [ "$n" -gt 0 ]; then
        touch "$BENCH_DIR/stop"
        wait "$CLIENT_PID" || bench_die "the upload client failed"
        CLIENT_PID=
        SUMMARY=$(cat "$BENCH_DIR/client-$name.json")
    fi
    if [ "$bad" != 0 ] || [ "$err" != 0 ]; then
        bench_die "$name: wrk on /static/ had $bad non-2xx, $err socket errors"
    fi
}

field() {
    "$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' \
        "$SUMMARY" "$1"
}

show() {
    printf '%-30s %10s req/s  p99 %7s ms  max %7s ms  worker %s cores\n' \
        "$1" "$W_RPS" "$W_P99" "$W_MAX" "$CPU"
    if [ -n "$SUMMARY" ]; then
        echo "   uploads: $(field uploads) in $(field seconds) s ($(field per_s)/s), codes $(field codes), wrong answers $(field bad), client errors $(field n_errors)"
        echo "   in flight (sampled): median $(field in_flight_median), min $(field in_flight_min); answer: median $(field answer_p50_s) s, max $(field answer_max_s) s"
        if [ "$(field bad)" != 0 ] || [ "$(field n_errors)" != 0 ]; then
            echo "   first wrong answers: $(field bad_first) $(field errors)" >&2
            FAILS=1
        fi
    fi
}

med() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.2f", m }'
}

FAILS=0
declare -a B_RPS=() B_P99=() S_RPS=() S_P99=() C_RPS=() C_P99=() S_UPL=()
echo
echo "== $ROUNDS rounds of: baseline, slow, control (worker pid $NGX_WORKER)"
for r in $(seq "$ROUNDS"); do
    echo "-- round $r"
    run "baseline-$r" "" 0 0
    show "baseline, no uploads"
    B_RPS+=("$W_RPS") B_P99+=("$W_P99")

    run "slow-$r" slow 0 "$IN_FLIGHT"
    show "$IN_FLIGHT uploads, slow callback"
    S_RPS+=("$W_RPS") S_P99+=("$W_P99")
    s_rate=$(field per_s)
    S_UPL+=("$(field uploads)")

    # the same rate of uploads, no callback: as many connections as it takes
    run "control-$r" "" "$s_rate" "$IN_FLIGHT"
    show "control: $s_rate uploads/s, no callback"
    C_RPS+=("$W_RPS") C_P99+=("$W_P99")
    echo "   slow / baseline: req/s $(awk -v s="${S_RPS[-1]}" -v b="${B_RPS[-1]}" 'BEGIN { printf "%.2f", s / b }'); slow / control: $(awk -v s="${S_RPS[-1]}" -v c="${C_RPS[-1]}" 'BEGIN { printf "%.2f", s / c }')"
done
echo "   app: $(curl -sS "http://127.0.0.1:$CALLBACK_PORT/count") callbacks answered in all"

b_rps=$(med "${B_RPS[@]}") b_p99=$(med "${B_P99[@]}")
s_rps=$(med "${S_RPS[@]}") s_p99=$(med "${S_P99[@]}")
c_rps=$(med "${C_RPS[@]}") c_p99=$(med "${C_P99[@]}")
rr=$(awk -v s="$s_rps" -v b="$b_rps" 'BEGIN { printf "%.2f", s / b }')
rc=$(awk -v s="$s_rps" -v c="$c_rps" 'BEGIN { printf "%.2f", s / c }')
v1=$(awk -v r="$rr" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
v2=$(awk -v p="$s_p99" -v t="$TARGET_MS" 'BEGIN { print (p < t) ? "PASS" : "FAIL" }')

echo
echo "== results: /static/ while $IN_FLIGHT uploads wait $CALLBACK_MS ms for their post callback"
printf '%-46s %10s %9s\n' "medians of $ROUNDS rounds" "req/s" "p99 ms"
printf '%-46s %10s %9s\n' "baseline, no uploads" "$b_rps" "$b_p99"
printf '%-46s %10s %9s\n' "$IN_FLIGHT uploads waiting on the slow callback" "$s_rps" "$s_p99"
printf '%-46s %10s %9s\n' "control: the same uploads/s, no callback" "$c_rps" "$c_p99"
echo
printf '%-46s %9s %9s\n' target value goal
printf '%-46s %9s %9s  %s\n' "req/s, slow callbacks / baseline" "$rr" ">= $TARGET_RATIO" "$v1"
printf '%-46s %9s %9s  %s\n' "p99 ms, slow callbacks (baseline $b_p99)" "$s_p99" "< $TARGET_MS" "$v2"
printf '%-46s %9s\n' "   (req/s, slow callbacks / control" "$rc)"
printf '%-46s %9s\n' "   (p99 ms, control" "$c_p99)"
[ "$FAILS" = 0 ] || bench_die "some uploads were answered wrong (above)"
exit 0
