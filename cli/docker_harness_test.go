package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Docker tests run schat as containers of the image the repository's
// Dockerfile builds, a cluster of them, and break it the ways a
// deployment breaks: a container killed, a container cut off from the
// others. Only the docker CLI is used; the engine pulls nothing.

// dockerWait bounds each wait of a Docker test: for a cluster to form,
// for an election, for a node to catch up.
const dockerWait = 30 * time.Second

// dockerCommandWait bounds one docker command.
const dockerCommandWait = 2 * time.Minute

var static struct {
	once sync.Once
	dir  string // the build context: the static binary alone
	err  error
}

// staticBinary builds a statically linked schat for the image, once for
// all tests of the package, beside the binary schatBinary builds, and
// returns the directory holding it.
func staticBinary(t testing.TB) string {
	t.Helper()
	schatBinary(t)
	static.once.Do(func() {
		static.dir = filepath.Join(build.dir, "image")
		cmd := exec.Command("go", "build", "-o", filepath.Join(static.dir, "schat"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			static.err = fmt.Errorf("go build (static): %w\n%s", err, out)
		}
	})
	if static.err != nil {
		t.Fatal(static.err)
	}
	return static.dir
}

// docker runs the docker CLI and returns its standard output, trimmed. It
// fails the test if the command fails.
func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := dockerTry(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerTry runs the docker CLI and returns its standard output, trimmed,
// or an error carrying what it printed.
func dockerTry(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w\n%s%s", strings.Join(args, " "), err, out, &stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// dockerCluster is a cluster of schat containers on two networks: a
// client network, on which each node's client and HTTP ports are
// published on 127.0.0.1, and an internal cluster network for node-to-node
// traffic, from which a test can cut a node while its clients stay
// connected.
type dockerCluster struct {
	t       testing.TB
	name    string // prefix of every container, network and image name
	image   string
	clients string // the client network
	cluster string // the cluster network
	subnet  string // the cluster network's first three octets, "10.x.y"
	secret  string
	nodes   []*dockerNode
	http    *http.Client
}

// dockerNode is one container of a dockerCluster.
type dockerNode struct {
	id        string // node1, node2, ...
	container string
	alias     string // its name on the cluster network
	ip        string // its address on the cluster network

	// Published addresses on 127.0.0.1. They change when the container
	// starts again.
	clientAddr string
	httpAddr   string

	created bool // the container exists
}

// newDockerCluster builds the image and starts size containers that
// form one cluster with --join and --bootstrap-expect, and waits until
// every node is ready. Everything it creates is removed when the test
// ends, and on failure the test log gets each container's log.
func newDockerCluster(t testing.TB, size int) *dockerCluster {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker is not on PATH")
	}
	dir := staticBinary(t)
	dc := &dockerCluster{t: t, name: "schat-test-" + randomHex(t, 4),
		secret: randomHex(t, 32), http: &http.Client{Timeout: 2 * time.Second}}
	dc.buildImage(dir)
	dc.createNetworks()
	t.Cleanup(dc.removeContainers)
	t.Cleanup(dc.dumpLogsOnFailure)
	for i := range size {
		n := &dockerNode{id: fmt.Sprintf("node%d", i+1)}
		n.container = dc.name + "-" + n.id
		n.alias = "raft-" + n.id
		n.ip = fmt.Sprintf("%s.%d", dc.subnet, 11+i)
		dc.nodes = append(dc.nodes, n)
	}
	for _, n := range dc.nodes {
		dc.create(n)
	}
	for _, n := range dc.nodes {
		docker(t, "start", n.container)
		dc.readPorts(n)
	}
	dc.waitReady(dc.nodes...)
	return dc
}

func randomHex(t testing.TB, bytes int) string {
	b := make([]byte, bytes)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildImage builds the repository's Dockerfile on a context holding the
// static binary alone.
func (dc *dockerCluster) buildImage(dir string) {
	dockerfile, err := filepath.Abs(filepath.Join("..", "Dockerfile"))
	if err != nil {
		dc.t.Fatal(err)
	}
	dc.image = dc.name + ":test"
	docker(dc.t, "build", "-q", "-f", dockerfile, "-t", dc.image, dir)
	dc.t.Cleanup(func() { dc.cleanup("rmi", "-f", dc.image) })
}

// createNetworks creates the client network and the internal cluster
// network, the latter on a random 10.x.y.0/24 so that nodes can keep
// fixed addresses on it; a subnet another network holds is skipped.
func (dc *dockerCluster) createNetworks() {
	dc.clients = dc.name + "-clients"
	docker(dc.t, "network", "create", dc.clients)
	dc.t.Cleanup(func() { dc.cleanup("network", "rm", dc.clients) })

	dc.cluster = dc.name + "-cluster"
	var err error
	for range 10 {
		dc.subnet = fmt.Sprintf("10.%d.%d", 16+randomInt(dc.t, 224), randomInt(dc.t, 256))
		_, err = dockerTry("network", "create", "--internal",
			"--subnet", dc.subnet+".0/24", dc.cluster)
		if err == nil {
			dc.t.Cleanup(func() { dc.cleanup("network", "rm", dc.cluster) })
			return
		}
	}
	dc.t.Fatalf("no free subnet for the cluster network: %v", err)
}

func randomInt(t testing.TB, n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return v.Int64()
}

// create creates n's container with the image's own command and the
// cluster settings in the environment: it joins the other nodes by their
// names on the cluster network and advertises its own. Registration,
// login and password hashing are made cheap for the test.
func (dc *dockerCluster) create(n *dockerNode) {
	var join []string
	for _, o := range dc.nodes {
		if o != n {
			join = append(join, o.alias+":7421")
		}
	}
	env := []string{
		"SCHAT_NODE_ID=" + n.id,
		"SCHAT_RAFT_ADVERTISE=" + n.alias + ":7421",
		"SCHAT_JOIN=" + strings.Join(join, ","),
		fmt.Sprintf("SCHAT_BOOTSTRAP_EXPECT=%d", len(dc.nodes)),
		"SCHAT_CLUSTER_SECRET=" + dc.secret,
		"SCHAT_LOG_FORMAT=json",
		"SCHAT_RATE_PER_MINUTE=1000000",
		"SCHAT_ARGON2_MEMORY_KIB=1024",
		"SCHAT_ARGON2_TIME=1",
	}
	args := []string{"create", "--name", n.container, "--network", dc.clients,
		"-p", "127.0.0.1::7420", "-p", "127.0.0.1::7480"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	docker(dc.t, append(args, dc.image)...)
	n.created = true
	dc.connect(n)
}

// connect attaches n to the cluster network at its fixed address.
//
// The address is fixed because a node resolves --raft-advertise once, at
// start, and the other nodes know it by that IP from then on. Docker
// hands a freed address to the next container that asks, so a container
// restarted or reconnected after another one came back would otherwise
// take that one's address, and the cluster would send each of them the
// other's traffic.
func (dc *dockerCluster) connect(n *dockerNode) {
	docker(dc.t, "network", "connect", "--ip", n.ip, "--alias", n.alias, dc.cluster, n.container)
}

// readPorts reads the host addresses of n's published ports.
func (dc *dockerCluster) readPorts(n *dockerNode) {
	dc.t.Helper()
	n.clientAddr = dc.port(n, "7420/tcp")
	n.httpAddr = dc.port(n, "7480/tcp")
}

func (dc *dockerCluster) port(n *dockerNode, port string) string {
	dc.t.Helper()
	out := docker(dc.t, "port", n.container, port)
	addr, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		dc.t.Fatalf("got published address %q for %s of %s, want one on 127.0.0.1",
			out, port, n.container)
	}
	return addr
}

// kill ends n's container with SIGKILL.
func (dc *dockerCluster) kill(n *dockerNode) {
	docker(dc.t, "kill", n.container)
}

// restart starts n's stopped container again on its data and reads its
// new published ports.
func (dc *dockerCluster) restart(n *dockerNode) {
	docker(dc.t, "start", n.container)
	dc.readPorts(n)
}

// cut disconnects n from the cluster network: it can no longer reach the
// other nodes, nor they it, while its clients stay connected.
func (dc *dockerCluster) cut(n *dockerNode) {
	docker(dc.t, "network", "disconnect", dc.cluster, n.container)
}

// heal reconnects n to the cluster network at its address.
func (dc *dockerCluster) heal(n *dockerNode) {
	dc.connect(n)
}

// waitReady polls each node's /readyz until it answers 200.
func (dc *dockerCluster) waitReady(nodes ...*dockerNode) {
	dc.t.Helper()
	deadline := time.Now().Add(dockerWait)
	for _, n := range nodes {
		for !dc.ready(n) {
			if time.Now().After(deadline) {
				dc.t.Fatalf("%s not ready within %v", n.id, dockerWait)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (dc *dockerCluster) ready(n *dockerNode) bool {
	resp, err := dc.http.Get("http://" + n.httpAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// shardMetric returns the values of a per-shard series on n's /metrics,
// by shard label.
func (dc *dockerCluster) shardMetric(n *dockerNode, name string) (map[string]float64, error) {
	resp, err := dc.http.Get("http://" + n.httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+`{shard="`)
		if !ok {
			continue
		}
		shard, value, _ := strings.Cut(rest, `"} `)
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %q: %w", n.id, sc.Text(), err)
		}
		out[shard] = v
	}
	return out, sc.Err()
}

// leads returns how many shards n leads; 0 if it does not answer.
func (dc *dockerCluster) leads(n *dockerNode) int {
	led, _ := dc.shardMetric(n, "schat_shard_is_leader")
	count := 0
	for _, v := range led {
		if v == 1 {
			count++
		}
	}
	return count
}

// waitCaughtUp waits until n has applied, in every shard, as much as the
// most advanced of others had when the wait began.
func (dc *dockerCluster) waitCaughtUp(n *dockerNode, others ...*dockerNode) {
	dc.t.Helper()
	want := make(map[string]float64)
	for _, o := range others {
		applied, err := dc.shardMetric(o, "schat_shard_applied_index")
		if err != nil {
			dc.t.Fatal(err)
		}
		for shard, index := range applied {
			want[shard] = max(want[shard], index)
		}
	}
	deadline := time.Now().Add(dockerWait)
	for {
		got, err := dc.shardMetric(n, "schat_shard_applied_index")
		if err == nil && caughtUp(got, want) {
			return
		}
		if time.Now().After(deadline) {
			dc.t.Fatalf("%s did not catch up within %v: applied %v, want at least %v (%v)",
				n.id, dockerWait, got, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func caughtUp(got, want map[string]float64) bool {
	for shard, index := range want {
		if got[shard] < index {
			return false
		}
	}
	return len(want) > 0
}

// busiest returns the node among nodes that leads the most shards.
func (dc *dockerCluster) busiest(nodes ...*dockerNode) *dockerNode {
	best, most := nodes[0], -1
	for _, n := range nodes {
		if l := dc.leads(n); l > most {
			best, most = n, l
		}
	}
	return best
}

// cleanup runs a docker command that removes something, logging rather
// than failing if it cannot.
func (dc *dockerCluster) cleanup(args ...string) {
	if _, err := dockerTry(args...); err != nil {
		dc.t.Logf("cleanup: %v", err)
	}
}

// removeContainers removes every container the cluster created, with its
// data volume.
func (dc *dockerCluster) removeContainers() {
	for _, n := range dc.nodes {
		if n.created {
			dc.cleanup("rm", "-f", "-v", n.container)
		}
	}
}

// dumpLogsOnFailure puts the end of each container's log into the test
// log if the test failed.
func (dc *dockerCluster) dumpLogsOnFailure() {
	if !dc.t.Failed() {
		return
	}
	for _, n := range dc.nodes {
		if !n.created {
			continue
		}
		out, err := exec.Command("docker", "logs", "--tail", "300", n.container).CombinedOutput()
		if err != nil {
			dc.t.Logf("docker logs %s: %v", n.container, err)
		}
		dc.t.Logf("log of %s (%s), last 300 lines:\n%s", n.id, n.container, out)
	}
}
