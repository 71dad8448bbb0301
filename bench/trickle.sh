#!/usr/bin/env bash
# The memory of slow uploads: UPLOADS (1000) whole uploads at once, each
# trickling CHUNK (1024) bytes a second for SECONDS_ (30) seconds, into one
# nginx worker (docs/performance.md, "Slow uploads: memory").  A
# measurement, not a test: it exits 0 whatever the figures, and non-zero
# only when something broke (an upload not answered 201, a stored file of
# the wrong size or SHA-256).
#
#   make && bench/trickle.sh
#
# The client (Python 3 asyncio, written to BENCH_DIR/trickle_client.py)
# opens UPLOADS connections to /t/ (`upload on;`: sha256, upload_fsync on),
# 100 every 0.1 s; each sends
#     PUT /t/k<i> HTTP/1.1, Content-Length: CHUNK * SECONDS_ (30720)
# then one CHUNK a second (the connections spread over each second), then
# reads the answer.  Each body is random, its own.  Meanwhile the client
# reads the worker's VmRSS (/proc/<pid>/status) every second.  Reported:
# the worker's RSS before (fresh worker, after WARMUP uploads, nothing in
# flight), its peak during the run (sampled, and VmHWM, the kernel's own
# high-water mark: the larger of the two counts), and (peak - before) /
# UPLOADS: the memory of one upload in flight.  Target: < 64 KiB.  Then every answer must be 201 with the body's
# sha256, and every stored file the body's size and SHA-256.
#
# nginx allocates the body buffer per request, when the body is first read,
# of min(client_body_buffer_size, Content-Length) bytes (with some
# leeway: up to 1.25 x the buffer); the module may add a second block of
# the same size once the first is full (double buffering): the result
# depends on client_body_buffer_size and on the body's size.  BUFFERS runs
# the whole benchmark once per size, each with a fresh nginx:
# "512k 8k" by default, 512k being what bench/lib.sh and conf/nginx.conf
# use.
#
# Environment:
#   UPLOADS    concurrent uploads (1000)
#   CHUNK      bytes sent per upload each second (1024)
#   SECONDS_   seconds of trickling: the body is CHUNK * SECONDS_ (30)
#   BUFFERS    client_body_buffer_size of each run ("512k 8k")
#   WARMUP     uploads made before "before" is read (20)
#   TARGET_KIB the target per upload in flight, KiB (64)
#   PYTHON     the Python 3 of the client (python3)
# and those of bench/lib.sh, with other defaults: BENCH_DIR
# (build/bench/trickle), BENCH_PORT (8801), REDIS_PORT (6401).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-$(cd "$HERE/.." && pwd)/build/bench/trickle}
BENCH_PORT=${BENCH_PORT:-8801}
REDIS_PORT=${REDIS_PORT:-6401}

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

UPLOADS=${UPLOADS:-1000}
CHUNK=${CHUNK:-1024}
SECONDS_=${SECONDS_:-30}
BUFFERS=${BUFFERS:-512k 8k}
WARMUP=${WARMUP:-20}
TARGET_KIB=${TARGET_KIB:-64}
PYTHON=${PYTHON:-python3}

for v in UPLOADS CHUNK SECONDS_ TARGET_KIB; do
    case ${!v} in
    ''|*[!0-9]*|0) bench_die "$v must be a positive number" ;;
    esac
done
case $WARMUP in
''|*[!0-9]*) bench_die "WARMUP must be a number" ;;
esac

SIZE=$((CHUNK * SECONDS_))
CLIENT=$BENCH_DIR/trickle_client.py

CASE_DESC[t]="module, sha256, fsync on (trickled uploads)"
CASE_CONF[t]="upload on;"

# 1000 client sockets, 1000 temp files, Redis, the listener: room to spare
BENCH_WORKER_CONNECTIONS=4096
BENCH_MAIN_CONF="worker_rlimit_nofile 16384;"

# the client's sockets and nginx's (nginx inherits this shell's limit too)
need=$((UPLOADS * 2 + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null \
        || bench_die "ulimit -n $need refused (hard limit $(ulimit -Hn))"
fi

command -v "$PYTHON" >/dev/null || bench_die "no $PYTHON: run \`make deps\`"

trap bench_stop EXIT
trap 'exit 130' INT TERM
mkdir -p "$BENCH_DIR"

cat > "$CLIENT" <<'PY'
# Written by bench/trickle.sh: UPLOADS concurrent uploads, each trickling
# CHUNK bytes a second; samples the nginx worker's VmRSS each second.
import asyncio, hashlib, json, os, sys, time

(host, port, prefix, n, chunk, seconds, pid, outdir) = sys.argv[1:9]
port, n, chunk, seconds = int(port), int(n), int(chunk), int(seconds)
size = chunk * seconds
inflight = 0
opened = 0
samples = []
results = {}


def rss(field="VmRSS"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


async def sampler(t0, stop):
    while not stop.is_set():
        samples.append((time.monotonic() - t0, opened, inflight, rss()))
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    samples.append((time.monotonic() - t0, opened, inflight, rss()))


async def upload(i, body, start, connected, go):
    global inflight, opened
    key = "k%05d" % i
    try:
        r, w = await asyncio.open_connection(host, port)
        opened += 1
        inflight += 1
        w.write(("PUT %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n"
                 "Connection: close\r\n\r\n" % (prefix, key, host, size))
                .encode())
        await w.drain()
    except Exception as e:
        connected.set_exception(e)
        raise
    connected.set_result(None)
    await go.wait()
    # chunk j at start + j seconds, connection i at i/n of each second
    offset = (i % n) / n
    for j in range(seconds):
        delay = start() + j + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        w.write(body[j * chunk:(j + 1) * chunk])
        await w.drain()
    sent = time.monotonic()
    answer = await asyncio.wait_for(r.read(), 300)
    w.close()
    inflight -= 1
    head, _, text = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode() if head else "none"
    try:
        got = json.loads(text).get("sha256", "")
    except ValueError:
        got = ""
    results[key] = (status, got, time.monotonic() - sent, text[:200])


async def main():
    t0 = time.monotonic()
    stop = asyncio.Event()
    bodies = [os.urandom(size) for _ in range(n)]
    with open(os.path.join(outdir, "expected.sha256"), "w") as f:
        for i, b in enumerate(bodies):
            f.write("%s  k%05d\n" % (hashlib.sha256(b).hexdigest(), i))
    before = rss()
    samp = asyncio.ensure_future(sampler(t0, stop))
    begin = {}
    start = lambda: begin["t"]
    tasks, waits = [], []
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    # open the connections 100 at a time (the listen backlog is 511)
    for i in range(n):
        fut = loop.create_future()
        waits.append(fut)
        tasks.append(asyncio.ensure_future(upload(i, bodies[i], start, fut, go)))
        if i % 100 == 99:
            await asyncio.sleep(0.1)
    await asyncio.gather(*waits, return_exceptions=True)
    begin["t"] = time.monotonic() + 0.5
    go.set()
    t_open = begin["t"] - t0
    done = await asyncio.gather(*tasks, return_exceptions=True)
    t_end = time.monotonic() - t0
    stop.set()
    await samp
    errors = [repr(e) for e in done if isinstance(e, BaseException)]
    peak = max(s[3] for s in samples)
    with open(os.path.join(outdir, "samples.tsv"), "w") as f:
        f.write("t_s\topened\tin_flight\tvmrss_kib\n")
        for s in samples:
            f.write("%.1f\t%d\t%d\t%d\n" % s)
    with open(os.path.join(outdir, "answers.tsv"), "w") as f:
        for key in sorted(results):
            st, got, lat, text = results[key]
            f.write("%s\t%s\t%s\t%.3f\t%s\n" % (key, st, got, lat,
                    text.decode("utf-8", "replace").replace("\n", " ")))
    peak_s = [s for s in samples if s[3] == peak][0]
    lats = sorted(r[2] for r in results.values())
    print(json.dumps({
        "before_kib": before, "peak_kib": peak,
        "peak_at_s": round(peak_s[0] - t_open, 1),
        "peak_in_flight": peak_s[2],
        "max_in_flight": max(s[2] for s in samples),
        "after_kib": samples[-1][3], "hwm_kib": rss("VmHWM"),
        "answered": len(results), "errors": errors[:5],
        "n_errors": len(errors),
        "all_open_s": round(t_open, 2), "total_s": round(t_end, 2),
        "answer_p50_s": round(lats[len(lats) // 2], 3) if lats else -1,
        "answer_max_s": round(lats[-1], 3) if lats else -1,
    }))

asyncio.run(main())
PY

echo "== machine"
bench_machine
echo "client:     $("$PYTHON" --version 2>&1) asyncio, $UPLOADS uploads of $SIZE bytes, $CHUNK bytes/s each for $SECONDS_ s"
echo "nginx:      worker_connections $BENCH_WORKER_CONNECTIONS, $BENCH_MAIN_CONF ulimit -n $(ulimit -n)"

warm=$BENCH_DIR/warm.bin
head -c "$SIZE" /dev/urandom > "$warm"

declare -a LINES=()
fails=0

for buf in $BUFFERS; do
    case $buf in
    [0-9]*[0-9kKmM]|[0-9]) ;;
    *) bench_die "BUFFERS: \"$buf\" is not a size like 512k" ;;
    esac
    BENCH_BUFFER=$buf
    bench_start t
    out=$BENCH_DIR/run-$buf
    rm -rf "$out"
    mkdir -p "$out"

    for i in $(seq "$WARMUP"); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -T "$warm" \
                    "http://127.0.0.1:$BENCH_PORT/t/warm$i")
        [ "$code" = 201 ] || bench_die "warm-up upload answered $code"
    done
    sleep 1

    echo
    echo "== client_body_buffer_size $buf: $UPLOADS uploads, worker pid $NGX_WORKER"
    json=$("$PYTHON" "$CLIENT" 127.0.0.1 "$BENCH_PORT" /t/ "$UPLOADS" \
               "$CHUNK" "$SECONDS_" "$NGX_WORKER" "$out") \
        || bench_die "the client failed"
    echo "$json" > "$out/summary.json"

    get() {
        "$PYTHON" -c 'import json,sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v)' \
            "$out/summary.json" "$1"
    }
    before=$(get before_kib)
    peak=$(get peak_kib)
    hwm=$(get hwm_kib)
    after=$(get after_kib)

    # the answers: 201, with the body's sha256
    ok=$(awk -F'\t' 'NR == FNR { sha[$2] = $1; next }
                     $2 == 201 && $3 == sha[$1] { n++ }
                     END { print n + 0 }' \
             <(sed 's/  /\t/' "$out/expected.sha256") "$out/answers.tsv")
    codes=$(cut -f2 "$out/answers.tsv" | sort | uniq -c | awk '{ printf "%s%s x %s", sep, $2, $1; sep = ", " }')
    # the stored files: size and SHA-256
    stored=0
    if (cd "$BENCH_DIR/store/default" \
            && sha256sum -c --quiet "$out/expected.sha256") \
            > "$out/sha256sum.txt" 2>&1
    then
        stored=$UPLOADS
    else
        stored=$((UPLOADS - $(grep -c 'FAILED' "$out/sha256sum.txt" || true)))
    fi
    sizes=$(find "$BENCH_DIR/store/default" -maxdepth 1 -name 'k*' -size "${SIZE}c" | wc -l)

    per_peak=$(awk -v p="$peak" -v b="$before" -v n="$UPLOADS" \
              'BEGIN { printf "%.1f", (p - b) / n }')
    per_hwm=$(awk -v p="$hwm" -v b="$before" -v n="$UPLOADS" \
              'BEGIN { printf "%.1f", (p - b) / n }')
    # the larger of the two: a sample may miss the peak, and VmHWM, which
    # the kernel updates lazily, may too
    per=$(awk -v x="$per_peak" -v y="$per_hwm" 'BEGIN { print (x > y) ? x : y }')
    verdict=$(awk -v x="$per" -v t="$TARGET_KIB" 'BEGIN { print (x < t) ? "PASS" : "FAIL" }')

    echo "client:     all $UPLOADS open after $(get all_open_s) s, done after $(get total_s) s; answers after the last byte: median $(get answer_p50_s) s, max $(get answer_max_s) s"
    echo "answers:    $codes; $ok of $UPLOADS are 201 with the body's sha256"
    echo "stored:     $stored of $UPLOADS files with the body's SHA-256, $sizes of $SIZE bytes"
    echo "RSS (KiB):  before $before, peak $peak (sampled, $(get peak_at_s) s into the trickle, $(get peak_in_flight) in flight), VmHWM $hwm, after $after"
    echo "per upload in flight: (peak - before) / $UPLOADS = $per_peak KiB (sampled), $per_hwm KiB (VmHWM): $per KiB"
    echo "samples:    $out/samples.tsv"

    if [ "$ok" != "$UPLOADS" ] || [ "$stored" != "$UPLOADS" ] \
       || [ "$sizes" != "$UPLOADS" ] || [ "$(get n_errors)" != 0 ]
    then
        echo "client errors: $(get errors)" >&2
        head -5 "$out/sha256sum.txt" >&2
        awk -F'\t' '$2 != 201' "$out/answers.tsv" | head -5 >&2
        fails=1
        LINES+=("$(printf '%-46s %9s %9s  %s' "buffer $buf: uploads correct" "$ok/$UPLOADS" "all" "FAIL")")
    fi
    LINES+=("$(printf '%-46s %9s %9s  %s' "buffer $buf: KiB per upload in flight" "$per" "< $TARGET_KIB" "$verdict")")

    bench_stop
done

echo
echo "== results: $UPLOADS uploads of $SIZE bytes at $CHUNK bytes/s"
printf '%-46s %9s %9s\n' target value goal
printf '%s\n' "${LINES[@]}"
[ "$fails" = 0 ] || bench_die "some uploads were not stored right (above)"
exit 0
