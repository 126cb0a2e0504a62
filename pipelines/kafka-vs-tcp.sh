#!/usr/bin/env bash
# Runs the per-device report fed through a Kafka topic (kafka-device-report.toml) and
# point-to-point over TCP (tcp-device-report.toml), each by `weir produce` at the same rate,
# then compares their end-to-end latency (event creation -> Weir -> file) with `weir compare`.
#
#   pipelines/kafka-vs-tcp.sh [BROKERS] [RATE] [EVENTS]     (default 127.0.0.1:9092 50k 500k)
#
# WEIR names the weir binary (default: target/release/weir); OUT the directory for the reports,
# the table and the plots (default: out/kafka-vs-tcp).
set -euo pipefail
brokers=${1:-127.0.0.1:9092}
rate=${2:-50k}
events=${3:-500k}
weir=${WEIR:-target/release/weir}
out=${OUT:-out/kafka-vs-tcp}
here=$(dirname "$0")
mkdir -p "$out"
topic="sensors-$$-$(date +%s)"

echo "== Kafka: topic $topic on $brokers"
"$weir" produce --events 0 --topic "$topic" --partitions 3 --brokers "$brokers"
# Measured while the producer runs (after a 2 s warm-up). The run reads the new topic from its
# start, so no event is missed however late it starts, and ends once it has read every event
# produced (--stop-after): on data, not on a clock, however busy the machine. The topic never
# ends, so its last windows would close only when the idle timeout passes; the end of the run
# flushes them, as the end of the TCP producer's connection does for the TCP run.
"$weir" run "$here/kafka-device-report.toml" --status-every 0s --report "$out/kafka.json" \
    --warmup 2s --stop-after "$events" \
    --set "sources.sensors.brokers=\"$brokers\"" --set "sources.sensors.topics=[\"$topic\"]" \
    --set "sources.sensors.group_id=\"$topic\"" --set 'sources.sensors.start="earliest"' \
    2>"$out/kafka.log" &
run=$!
# Give the consumer its warm-up before producing (this affects only the latency figures).
sleep 2
"$weir" produce --profile iot --rate "$rate" --events "$events" --topic "$topic" --brokers "$brokers" \
    --key device_id 2>&1 | tee "$out/kafka-produce.log"
if ! wait "$run"; then
    cat "$out/kafka.log" >&2
    exit 1
fi
grep -A4 "partitions, consumer lag" "$out/kafka.log" || true

echo "== TCP"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$weir" run "$here/tcp-device-report.toml" --status-every 0s --report "$out/tcp.json" \
    --set "sources.sensors.address=\"127.0.0.1:$port\"" 2>"$out/tcp.log" &
run=$!
"$weir" produce --profile iot --rate "$rate" --events "$events" --tcp "127.0.0.1:$port" 2>&1 \
    | tee "$out/tcp-produce.log"
wait "$run"

echo "== compared"
"$weir" compare --from "$out/tcp.json" "$out/kafka.json" --out "$out"
