#!/usr/bin/env bash
# Traces of a zikade devnet in Jaeger.
#
#   scripts/jaeger-demo.sh [-n NODES]
#
# 1. Picks a trace collector:
#    - OTEL_EXPORTER_OTLP_ENDPOINT if you set it (any OTLP/HTTP collector: Jaeger >= 1.35,
#      an OpenTelemetry Collector, rotel, ...);
#    - else Jaeger all-in-one in docker ($JAEGER_IMAGE), if a docker engine runs here;
#    - else whatever already listens on 127.0.0.1:4318;
#    - else scripts/otlp_sink.py, which prints each received trace as a tree, so the
#      demo still shows what Jaeger would.
# 2. Runs `zikade devnet --demo` with tracing on (find-peer, provide, find-providers in one
#    process), then a devnet in the background and a few CLI commands against its node 0
#    (each command is one trace: the CLI's root span, the node's HTTP span under it via
#    traceparent, the DHT call, the query, one span per request).
# 3. Prints where to look (the Jaeger UI, http://127.0.0.1:16686 by default).
#
# Environment: ZIKADE (the zikade command; default .venv/bin/zikade or zikade on PATH),
# JAEGER_IMAGE (default jaegertracing/all-in-one:1.62.0), JAEGER_UI (shown at the end when
# you bring your own collector), KEEP_JAEGER=1 (leave the container running; the default).
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=8
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--nodes) NODES="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done

if [ -n "${ZIKADE:-}" ]; then
    :
elif [ -x .venv/bin/zikade ]; then
    ZIKADE=.venv/bin/zikade
elif command -v zikade >/dev/null 2>&1; then
    ZIKADE=zikade
else
    echo "zikade is not installed: run 'pip install .' (or scripts/test) first" >&2
    exit 1
fi
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi

JAEGER_IMAGE="${JAEGER_IMAGE:-jaegertracing/all-in-one:1.62.0}"
JAEGER_CONTAINER=zikade-jaeger
UI="${JAEGER_UI:-http://127.0.0.1:16686}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/zikade-jaeger-demo.XXXXXX")"
SINK_PID=""
DEVNET_PID=""

cleanup() {
    if [ -n "$DEVNET_PID" ] && kill -0 "$DEVNET_PID" 2>/dev/null; then
        kill -INT "$DEVNET_PID" 2>/dev/null || true
        wait "$DEVNET_PID" 2>/dev/null || true
    fi
    if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
        kill -TERM "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

port_open() {  # host port -> 0 if something accepts TCP connections there
    "$PY" - "$1" "$2" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

wait_http() {  # url seconds -> 0 once the URL answers
    "$PY" - "$1" "$2" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=2).close()
        sys.exit(0)
    except Exception:
        time.sleep(0.5)
sys.exit(1)
EOF
}

docker_engine() {
    command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

# ------------------------------------------------------------------ 1. a collector
COLLECTOR=""
if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
    ENDPOINT="$OTEL_EXPORTER_OTLP_ENDPOINT"
    COLLECTOR="your collector at $ENDPOINT"
    UI="${JAEGER_UI:-the UI of your collector (Jaeger: http://<its host>:16686)}"
else
    ENDPOINT="http://127.0.0.1:4318"
    if docker_engine; then
        if [ -z "$(docker ps -q --filter "name=^${JAEGER_CONTAINER}$")" ]; then
            docker rm -f "$JAEGER_CONTAINER" >/dev/null 2>&1 || true
            echo "== starting Jaeger ($JAEGER_IMAGE) in docker"
            docker run -d --name "$JAEGER_CONTAINER" \
                -e COLLECTOR_OTLP_ENABLED=true \
                -p 127.0.0.1:16686:16686 -p 127.0.0.1:4317:4317 -p 127.0.0.1:4318:4318 \
                "$JAEGER_IMAGE" >/dev/null
        fi
        if ! wait_http "http://127.0.0.1:16686/" 60; then
            echo "Jaeger did not come up on 127.0.0.1:16686 (docker logs $JAEGER_CONTAINER)" >&2
            exit 1
        fi
        COLLECTOR="Jaeger in docker (container $JAEGER_CONTAINER)"
    else
        cat >&2 <<EOF
!! No docker engine is running here, so Jaeger cannot be started.
!! To see the traces in Jaeger, either
!!   - start docker (or use a machine with docker) and run this script again, or
!!   - point OTEL_EXPORTER_OTLP_ENDPOINT at any OTLP/HTTP collector and run it again:
!!       OTEL_EXPORTER_OTLP_ENDPOINT=http://<collector>:4318 JAEGER_UI=http://<jaeger>:16686 $0
!!     (Jaeger >= 1.35 ingests OTLP on port 4318; an OpenTelemetry Collector or rotel work too).
EOF
        if port_open 127.0.0.1 4318; then
            COLLECTOR="the OTLP/HTTP collector already listening on 127.0.0.1:4318"
        else
            echo "!! Meanwhile the traces go to scripts/otlp_sink.py, which prints them below." >&2
            "$PY" scripts/otlp_sink.py --port 4318 >"$WORK/sink.log" 2>&1 &
            SINK_PID=$!
            for _ in $(seq 50); do port_open 127.0.0.1 4318 && break; sleep 0.1; done
            COLLECTOR="scripts/otlp_sink.py (a stand-in; no Jaeger UI)"
        fi
    fi
fi
echo "== traces go to $ENDPOINT: $COLLECTOR"
export OTEL_EXPORTER_OTLP_ENDPOINT="$ENDPOINT"
export OTEL_BSP_SCHEDULE_DELAY="${OTEL_BSP_SCHEDULE_DELAY:-500}"

# ------------------------------------------------------------------ 2. the devnet and queries
echo
echo "== zikade devnet --demo -n $NODES (one process, traced)"
OTEL_SERVICE_NAME=zikade-devnet timeout 180 "$ZIKADE" devnet --demo -n "$NODES" --trace "$ENDPOINT"

echo
echo "== a devnet in the background, and CLI commands against its node 0"
REPO="$WORK/repo"
OTEL_SERVICE_NAME=zikade-devnet "$ZIKADE" devnet -n "$NODES" --repo "$REPO" --trace "$ENDPOINT" \
    >"$WORK/devnet.log" 2>&1 &
DEVNET_PID=$!
for _ in $(seq 300); do
    grep -q "devnet is ready" "$WORK/devnet.log" 2>/dev/null && break
    kill -0 "$DEVNET_PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "devnet is ready" "$WORK/devnet.log"; then
    echo "the devnet did not start:" >&2
    cat "$WORK/devnet.log" >&2
    exit 1
fi
PEER="$(sed -n 's/^ *zikade find-peer \([^ ]*\).*/\1/p' "$WORK/devnet.log" | head -n 1)"
CID=bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e  # sha2-256 of "hello world"
export ZIKADE_PATH="$REPO"
run() {
    echo "\$ zikade $*"
    OTEL_SERVICE_NAME=zikade-cli timeout 60 "$ZIKADE" "$@" --trace "$ENDPOINT" || true
}
run find-peer "$PEER"
run closest-peers "$PEER"
run provide "$CID"
run find-providers "$CID"
sleep 1  # the devnet's batch exporter flushes every OTEL_BSP_SCHEDULE_DELAY ms
kill -INT "$DEVNET_PID" 2>/dev/null || true
wait "$DEVNET_PID" 2>/dev/null || true
DEVNET_PID=""

# ------------------------------------------------------------------ 3. where to look
echo
if [ -n "$SINK_PID" ]; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
    cat "$WORK/sink.log"
    echo
    echo "== Jaeger UI: $UI (not running here: no docker engine; see the note above)"
else
    echo "== Jaeger UI: $UI"
    echo "   services: zikade-cli (one trace per command), zikade-devnet (the --demo run and"
    echo "   node 0's side of each command, joined to the CLI's trace through traceparent)"
fi
