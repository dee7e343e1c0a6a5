package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// composeFile is the example a self-hoster starts a three-node cluster
// from.
const composeFile = "../examples/three-node/compose.yaml"

// composeProject is examples/three-node/compose.yaml brought up as a
// Compose project of its own.
type composeProject struct {
	t    testing.TB
	name string
	dir  string // holds the compose file and its .env
}

// compose runs docker-compose on the project and returns its standard
// output, trimmed, or an error carrying what it printed.
func (cp *composeProject) compose(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandWait)
	defer cancel()
	full := append([]string{"-p", cp.name, "-f", filepath.Join(cp.dir, "compose.yaml")}, args...)
	cmd := exec.CommandContext(ctx, "docker-compose", full...)
	cmd.Dir = cp.dir
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker-compose %s: %w\n%s%s", strings.Join(full, " "), err,
			out, &stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// replaceExactly replaces every old in s with new, failing the test unless
// there are exactly n: the example changed, and the test must follow.
func replaceExactly(t testing.TB, s, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(s, old); got != n {
		t.Fatalf("%s holds %q %d times, want %d", composeFile, old, got, n)
	}
	return strings.ReplaceAll(s, old, new)
}

// writeProject writes the example's compose file into the project's
// directory as it is, but for what would clash with other clusters on
// this machine: the image it runs, the host ports it publishes (any free
// one instead) and the private network's subnet. The cluster's secret goes
// into .env, as the example's README says.
func (cp *composeProject) writeProject(image, subnet, secret string) {
	b, err := os.ReadFile(composeFile)
	if err != nil {
		cp.t.Fatal(err)
	}
	s := replaceExactly(cp.t, string(b), "image: schat\n", "image: "+image+"\n", 1)
	for i := 1; i <= 3; i++ {
		s = replaceExactly(cp.t, s, fmt.Sprintf(`"127.0.0.1:740%d:7420"`, i),
			`"127.0.0.1::7420"`, 1)
		s = replaceExactly(cp.t, s, fmt.Sprintf(`"127.0.0.1:748%d:7480"`, i),
			`"127.0.0.1::7480"`, 1)
	}
	s = replaceExactly(cp.t, s, "10.74.20.", subnet+".", 5)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(cp.dir, name), []byte(text), 0o600); err != nil {
			cp.t.Fatal(err)
		}
	}
	write("compose.yaml", s)
	write(".env", "SCHAT_CLUSTER_SECRET="+secret+"\n")
}

// up starts the project, on another random subnet when the one tried is
// taken.
func (cp *composeProject) up(image, secret string) {
	cp.t.Helper()
	var err error
	for range 5 {
		subnet := fmt.Sprintf("10.%d.%d", 16+randomInt(cp.t, 224), randomInt(cp.t, 256))
		cp.writeProject(image, subnet, secret)
		if _, err = cp.compose("up", "-d"); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "overlap") {
			break
		}
		cp.compose("down", "-v")
	}
	cp.t.Fatalf("compose up: %v", err)
}

// node reads the published addresses of a service of the project.
func (cp *composeProject) node(service string) *sysNode {
	cp.t.Helper()
	n := &sysNode{id: service}
	for _, p := range []struct {
		port string
		addr *string
	}{{"7420", &n.clientAddr}, {"7480", &n.httpAddr}} {
		out, err := cp.compose("port", service, p.port)
		if err != nil || !strings.HasPrefix(out, "127.0.0.1:") {
			cp.t.Fatalf("port %s of %s: %q, %v; want an address on 127.0.0.1", p.port,
				service, out, err)
		}
		*p.addr = out
	}
	return n
}

// TestDocker_Compose brings up examples/three-node/compose.yaml, as its
// README says, on an image built from the repository's Dockerfile: the
// three nodes form one cluster, `schat cluster status` sees all three,
// a user writes through every node and reads every write through every
// node; then `docker-compose down -v` takes it all away.
func TestDocker_Compose(t *testing.T) {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH", tool)
		}
	}
	dir := staticBinary(t)
	cp := &composeProject{t: t, name: "schat-compose-" + randomHex(t, 4), dir: t.TempDir()}
	dc := &dockerCluster{t: t, name: cp.name}
	dc.buildImage(dir)
	secret := randomHex(t, 32)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := cp.compose("logs", "--tail", "200")
			t.Logf("logs:\n%s", out)
		}
		if _, err := cp.compose("down", "-v"); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	cp.up(dc.image, secret)

	probe := newNodeProbe(t)
	var nodes []*sysNode
	for _, s := range []string{"node1", "node2", "node3"} {
		nodes = append(nodes, cp.node(s))
	}
	probe.waitReady(nodes...)
	pc := &procCluster{t: t, secret: secret}
	checkStatus(t, pc.electedStatus(nodes[0]), []string{"node1", "node2", "node3"}, nil)
	composeChat(t, nodes)

	if _, err := cp.compose("down", "-v"); err != nil {
		t.Fatalf("compose down: %v", err)
	}
	if out, err := cp.compose("ps", "-q"); err != nil || out != "" {
		t.Fatalf("after down, compose ps lists %q (%v), want nothing", out, err)
	}
}

// composeChat has ann write through every node and read, through every
// node, every one of her writes.
func composeChat(t *testing.T, nodes []*sysNode) {
	ctx := testCtx(t)
	first, _ := account(t, nodes[0].clientAddr, "ann", true)
	g, err := first.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "compose"})
	if err != nil {
		t.Fatal(err)
	}
	clients := []*transport.Client{first}
	for _, n := range nodes[1:] {
		c, _ := account(t, n.clientAddr, "ann", false)
		clients = append(clients, c)
	}
	for i, c := range clients {
		if _, err := c.Send(ctx, g.GroupId, "through "+nodes[i].id, ""); err != nil {
			t.Fatalf("send through %s: %v", nodes[i].id, err)
		}
	}
	for i, c := range clients {
		page, err := c.History(ctx, g.GroupId, 0, 10, transport.Linearizable())
		if err != nil {
			t.Fatalf("history through %s: %v", nodes[i].id, err)
		}
		var texts []string
		for _, m := range page.Messages {
			if m.Text != "" {
				texts = append(texts, m.Text)
			}
		}
		if want := "through node1,through node2,through node3"; strings.Join(texts, ",") != want {
			t.Fatalf("history through %s: %v, want %s", nodes[i].id, texts, want)
		}
	}
}
