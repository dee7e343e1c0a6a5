#!/usr/bin/env bash
# Starts one schat node in a temporary directory, pipes demo.txt into
# `schat chat`, prints what it answers and stops the node.
#
# Ports (override with the environment variables):
#   SCHAT_DEMO_CLIENT_ADDR  client protocol   127.0.0.1:17420
#   SCHAT_DEMO_HTTP_ADDR    /readyz, /ws      127.0.0.1:17480
#   SCHAT_DEMO_RAFT_ADDR    node to node      127.0.0.1:17421
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
client_addr=${SCHAT_DEMO_CLIENT_ADDR:-127.0.0.1:17420}
http_addr=${SCHAT_DEMO_HTTP_ADDR:-127.0.0.1:17480}
raft_addr=${SCHAT_DEMO_RAFT_ADDR:-127.0.0.1:17421}

# SCHAT_BIN runs an already built schat instead of building one;
# SCHAT_DEMO_WORK puts the data directories and logs in that directory and
# keeps them, instead of a temporary directory removed at the end.
work=${SCHAT_DEMO_WORK:-}
keep_work=1
if [[ -z $work ]]; then
	work=$(mktemp -d)
	keep_work=0
fi
mkdir -p "$work"
server_pid=""

cleanup() {
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -INT "$server_pid"
		wait "$server_pid" || true
	fi
	[[ $keep_work == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

schat_bin=${SCHAT_BIN:-}
if [[ -z $schat_bin ]]; then
	echo "== building schat"
	(cd "$root" && go build -o "$work/schat" ./cli)
	schat_bin=$work/schat
fi

echo "== starting a node in $work/data (log: $work/server.log)"
"$schat_bin" serve --data-dir "$work/data" --client-addr "$client_addr" \
	--http-addr "$http_addr" --raft-addr "$raft_addr" 2>"$work/server.log" &
server_pid=$!

# ready reports whether the node answers /readyz.
ready() {
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null "http://$http_addr/readyz" 2>/dev/null
	else
		grep -q 'msg=ready' "$work/server.log"
	fi
}

for _ in $(seq 1 300); do
	ready && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "the node exited:" >&2
		cat "$work/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
if ! ready; then
	echo "the node did not become ready in 30s:" >&2
	cat "$work/server.log" >&2
	exit 1
fi

echo "== schat chat --addr $client_addr < demo.txt"
# demo.txt has one command that fails on purpose (a wrong join password),
# so the client exits 1 reporting exactly one failure; anything else is
# a real error.
status=0
"$schat_bin" chat --addr "$client_addr" --linger 500ms <"$here/demo.txt" \
	2>"$work/chat.err" || status=$?
cat "$work/chat.err" >&2
if [[ $status -ne 0 ]] && ! grep -qx 'schat: 1 command(s) failed' "$work/chat.err"; then
	echo "== the demo failed" >&2
	exit "$status"
fi
echo "== done; stopping the node"
