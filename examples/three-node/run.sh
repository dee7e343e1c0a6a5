#!/usr/bin/env bash
# Starts a three-node schat cluster as three processes on this machine,
# waits until every node is ready, prints the cluster's state, runs a
# short chat through two different nodes and stops the nodes.
#
# Ports, on 127.0.0.1, for node N (1..3), from SCHAT_DEMO_BASE_PORT
# (default 27400; set it if these are taken):
#   base+20+N  client protocol   27421 27422 27423
#   base+30+N  node to node      27431 27432 27433
#   base+80+N  HTTP: /readyz     27481 27482 27483
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
base=${SCHAT_DEMO_BASE_PORT:-27400}

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
pids=()

cleanup() {
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -INT "$pid"
		fi
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	[[ $keep_work == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

client_addr() { echo "127.0.0.1:$((base + 20 + $1))"; }
raft_addr() { echo "127.0.0.1:$((base + 30 + $1))"; }
http_addr() { echo "127.0.0.1:$((base + 80 + $1))"; }

schat_bin=${SCHAT_BIN:-}
if [[ -z $schat_bin ]]; then
	echo "== building schat"
	(cd "$root" && go build -o "$work/schat" ./cli)
	schat_bin=$work/schat
fi

# Every node of a cluster needs the same secret: it authenticates the
# nodes to each other and is the operator's credential for
# `schat cluster`.
SCHAT_CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SCHAT_CLUSTER_SECRET

# The three nodes are started alike: each joins the other two and waits
# until all three answer, and then they form one cluster together. The
# order they start in does not matter.
for n in 1 2 3; do
	join=()
	for o in 1 2 3; do
		[[ $o == "$n" ]] || join+=("$(raft_addr "$o")")
	done
	echo "== starting node$n in $work/node$n (log: $work/node$n.log)"
	"$schat_bin" serve --node-id "node$n" --data-dir "$work/node$n" \
		--client-addr "$(client_addr "$n")" --http-addr "$(http_addr "$n")" \
		--raft-addr "$(raft_addr "$n")" \
		--join "$(IFS=,; echo "${join[*]}")" --bootstrap-expect 3 \
		>"$work/node$n.out" 2>"$work/node$n.log" &
	pids+=($!)
done

# ready reports whether node $1 answers /readyz: every shard has a leader.
ready() {
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null "http://$(http_addr "$1")/readyz" 2>/dev/null
	else
		grep -q 'msg=ready' "$work/node$1.log"
	fi
}

for n in 1 2 3; do
	for _ in $(seq 1 300); do
		ready "$n" && break
		if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
			echo "node$n exited:" >&2
			cat "$work/node$n.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	if ! ready "$n"; then
		echo "node$n did not become ready in 30s:" >&2
		cat "$work/node$n.log" >&2
		exit 1
	fi
	echo "== node$n is ready"
done

# status prints the cluster's state: with `schat cluster status` as node1
# sees it, or else from each node's /readyz and /metrics.
status() {
	if "$schat_bin" help cluster >/dev/null 2>&1; then
		echo "== schat cluster status --addr $(http_addr 1)"
		"$schat_bin" cluster status --addr "$(http_addr 1)"
		return
	fi
	for n in 1 2 3; do
		echo "== node$n: /readyz $(curl -fsS "http://$(http_addr "$n")/readyz")"
		curl -fsS "http://$(http_addr "$n")/metrics" | grep '^schat_shard_is_leader'
	done
}
status

# A short chat through two nodes: ann is connected to node1, ben to
# node2. Writes made on either node are forwarded to the shard's leader,
# wherever it is; node3 then serves the same history. On a new cluster
# the first users get uids 10001 and 10002 and the first group id 1001.
chat() {
	local n=$1
	echo "== schat chat --addr $(client_addr "$n")  (node$n)"
	"$schat_bin" chat --addr "$(client_addr "$n")"
}

chat 1 <<'SCRIPT'
reg ann pw-ann Ann 2 node1
login ann pw-ann
create lobby lobby-pass where node1 and node2 meet
SCRIPT

chat 2 <<'SCRIPT'
reg ben pw-ben Ben 1 node2
login ben pw-ben
apply 1001 lobby-pass hello from node2
SCRIPT

chat 1 <<'SCRIPT'
login ann pw-ann
audit 1001 lobby 10002 1
chat 0 1001 hi ben, this is ann on node1
SCRIPT

chat 2 <<'SCRIPT'
login ben pw-ben
chat 0 1001 hi ann, ben here on node2
SCRIPT

chat 3 <<'SCRIPT'
login ann pw-ann
his 1001
SCRIPT

echo "== done; stopping the nodes"
