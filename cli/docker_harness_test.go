package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Docker tests run schat as containers of the image the repository's
// Dockerfile builds, a cluster of them, and break it the ways a
// deployment breaks: a container killed, a container cut off from the
// others. Only the docker CLI is used; the engine pulls nothing.

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
	nodeProbe
	t       testing.TB
	name    string // prefix of every container, network and image name
	image   string
	clients string // the client network
	cluster string // the cluster network
	subnet  string // the cluster network's first three octets, "10.x.y"
	secret  string
	nodes   []*sysNode
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
	dc := &dockerCluster{t: t, nodeProbe: newNodeProbe(t), name: "schat-test-" + randomHex(t, 4),
		secret: randomHex(t, 32)}
	dc.buildImage(dir)
	dc.createNetworks()
	t.Cleanup(dc.removeContainers)
	t.Cleanup(dc.dumpLogsOnFailure)
	for i := range size {
		n := &sysNode{id: fmt.Sprintf("node%d", i+1)}
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
func (dc *dockerCluster) create(n *sysNode) {
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
func (dc *dockerCluster) connect(n *sysNode) {
	docker(dc.t, "network", "connect", "--ip", n.ip, "--alias", n.alias, dc.cluster, n.container)
}

// readPorts reads the host addresses of n's published ports.
func (dc *dockerCluster) readPorts(n *sysNode) {
	dc.t.Helper()
	n.clientAddr = dc.port(n, "7420/tcp")
	n.httpAddr = dc.port(n, "7480/tcp")
}

func (dc *dockerCluster) port(n *sysNode, port string) string {
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
func (dc *dockerCluster) kill(n *sysNode) {
	docker(dc.t, "kill", n.container)
}

// restart starts n's stopped container again on its data and reads its
// new published ports.
func (dc *dockerCluster) restart(n *sysNode) {
	docker(dc.t, "start", n.container)
	dc.readPorts(n)
}

// cut disconnects n from the cluster network: it can no longer reach the
// other nodes, nor they it, while its clients stay connected.
func (dc *dockerCluster) cut(n *sysNode) {
	docker(dc.t, "network", "disconnect", dc.cluster, n.container)
}

// heal reconnects n to the cluster network at its address.
func (dc *dockerCluster) heal(n *sysNode) {
	dc.connect(n)
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
