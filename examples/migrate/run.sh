#!/usr/bin/env bash
# Moves a three-node schat deployment to a new place, all on this machine:
# starts a three-node cluster, fills it with users, a group and messages,
# takes a backup through one node, checks the file, stops the old
# cluster, restores the file into a new data directory, starts it, joins
# two new nodes to it and checks that the history came along.
#
# Ports, on 127.0.0.1, from SCHAT_DEMO_BASE_PORT (default 27600):
#   old node N (1..3): client base+20+N, node to node base+30+N, HTTP base+80+N
#   new node N (1..3): client base+40+N, node to node base+50+N, HTTP base+90+N
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
base=${SCHAT_DEMO_BASE_PORT:-27600}

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
declare -A pids=()

stop_node() {
	local name=$1 pid=${pids[$1]:-}
	[[ -n $pid ]] || return 0
	kill -INT "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "pids[$name]"
}
cleanup() {
	for name in "${!pids[@]}"; do
		stop_node "$name"
	done
	[[ $keep_work == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT

# Addresses of node $2 (1..3) of the old or new deployment ($1).
addr() {
	local kind=$1 which=$2 n=$3 off
	case $kind/$which in
	client/old) off=20 ;; raft/old) off=30 ;; http/old) off=80 ;;
	client/new) off=40 ;; raft/new) off=50 ;; http/new) off=90 ;;
	esac
	echo "127.0.0.1:$((base + off + n))"
}

schat_bin=${SCHAT_BIN:-}
if [[ -z $schat_bin ]]; then
	echo "== building schat"
	(cd "$root" && go build -o "$work/schat" ./cli)
	schat_bin=$work/schat
fi
schat() { "$schat_bin" "$@"; }

# start NAME WHICH N [flags...] starts a node in $work/NAME. The binary
# itself runs in the background, not the schat function: a function run
# with & is a subshell, which ignores SIGINT, so stop_node's kill -INT
# would reach the subshell and never the node.
start() {
	local name=$1 which=$2 n=$3
	shift 3
	echo "== starting $name (log: $work/$name.log)"
	"$schat_bin" serve --node-id "$name" --data-dir "$work/$name" \
		--client-addr "$(addr client "$which" "$n")" --http-addr "$(addr http "$which" "$n")" \
		--raft-addr "$(addr raft "$which" "$n")" "$@" \
		>"$work/$name.out" 2>"$work/$name.log" &
	pids[$name]=$!
}

# wait_ready NAME WHICH N waits until the node answers /readyz.
wait_ready() {
	local name=$1 url="http://$(addr http "$2" "$3")/readyz"
	for _ in $(seq 1 300); do
		if curl -fsS -o /dev/null "$url" 2>/dev/null; then
			echo "== $name is ready"
			return
		fi
		if ! kill -0 "${pids[$name]}" 2>/dev/null; then
			echo "$name exited:" >&2
			cat "$work/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "$name did not become ready in 30s:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

# The old deployment: three nodes that form a cluster together. They
# share a secret, given as a file rather than on the command line, where
# any user of the machine could read it. Each node keeps it in its data
# directory, and it is also the operator's credential.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/old.secret")
for n in 1 2 3; do
	join=()
	for o in 1 2 3; do
		[[ $o == "$n" ]] || join+=("$(addr raft old "$o")")
	done
	start "old$n" old "$n" --cluster-secret-file "$work/old.secret" \
		--join "$(IFS=,; echo "${join[*]}")" --bootstrap-expect 3
done
for n in 1 2 3; do wait_ready "old$n" old "$n"; done

echo "== filling the old deployment"
schat chat --addr "$(addr client old 1)" <<'SCRIPT'
reg ann pw-ann Ann 2 here
reg ben pw-ben Ben 1 there
login ann pw-ann
create lobby lobby-pass the group that moves
SCRIPT
schat chat --addr "$(addr client old 2)" <<'SCRIPT'
login ben pw-ben
apply 1001 lobby-pass let me in
SCRIPT
schat chat --addr "$(addr client old 3)" <<'SCRIPT'
login ann pw-ann
audit 1001 lobby 10002 1
chat 0 1001 packed before the move
chat 0 1001 see you on the other side
SCRIPT

echo "== schat backup --addr $(addr http old 2)  (through any node)"
schat backup --addr "$(addr http old 2)" --cluster-secret-file "$work/old2/cluster.secret" \
	--out "$work/deployment.backup"
echo "== schat snapshot inspect"
schat snapshot inspect "$work/deployment.backup"

echo "== stopping the old deployment"
for n in 1 2 3; do stop_node "old$n"; done

# On the new machine: restore into a new directory. The restored node is
# a cluster of one with a new cluster ID and secret; the secret is printed
# once and kept in new1/cluster.secret. The old secret opens nothing here.
echo "== schat restore"
schat restore --from "$work/deployment.backup" --data-dir "$work/new1" \
	--node-id new1 --raft-addr "$(addr raft new 1)"
new_secret=$work/new1/cluster.secret

start new1 new 1
wait_ready new1 new 1
for n in 2 3; do
	start "new$n" new "$n" --join "$(addr raft new 1)" --cluster-secret-file "$new_secret"
done
for n in 2 3; do wait_ready "new$n" new "$n"; done
echo "== schat cluster status"
schat cluster status --addr "$(addr http new 1)" --cluster-secret-file "$new_secret"

echo "== checking the history on a node that joined after the restore"
history=$(schat chat --addr "$(addr client new 3)" <<'SCRIPT'
login ben pw-ben
his 1001
chat 0 1001 arrived
SCRIPT
)
echo "$history"
for want in "packed before the move" "see you on the other side" "chat result:OK"; do
	if ! grep -q "$want" <<<"$history"; then
		echo "missing after the move: $want" >&2
		exit 1
	fi
done
echo "== moved: every check passed; stopping the nodes"
