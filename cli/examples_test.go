package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exampleWait bounds one run of an example script.
const exampleWait = 3 * time.Minute

// runExample runs examples/NAME/run.sh as a user does, with bash, against
// the binary under test and in a work directory of the test's (which the
// script then keeps), with env added to the environment. The script runs
// in its own process group: when it is done, no process of that group may
// be left, so a node it failed to stop fails the test (and is killed).
func runExample(t *testing.T, name string, env ...string) string {
	t.Helper()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), exampleWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "examples", name, "run.sh"))
	cmd.Env = append(os.Environ(), append([]string{"SCHAT_BIN=" + schatBinary(t),
		"SCHAT_DEMO_WORK=" + work}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if left := syscall.Kill(-cmd.Process.Pid, 0); !errors.Is(left, syscall.ESRCH) {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("%s left processes running after it ended", name)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v:\n%s%s", name, exampleWait, out, logsIn(t, work))
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", name, err, out, logsIn(t, work))
	}
	return string(out)
}

// logsIn returns the node logs an example left in its work directory.
func logsIn(t testing.TB, work string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(work, "*.log"))
	var b strings.Builder
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "\n--- %s\n%s", filepath.Base(p), data)
	}
	return b.String()
}

// freeBase returns a base port such that base+off is free on 127.0.0.1
// for every off: the examples place their nodes at fixed offsets from
// one base. Bases are taken below the kernel's range for port 0.
func freeBase(t testing.TB, offs ...int) int {
	t.Helper()
	for range 100 {
		base := 10000 + 100*rand.IntN(200)
		if portsFree(base, offs) {
			return base
		}
	}
	t.Fatal("no free range of ports for the example")
	return 0
}

func portsFree(base int, offs []int) bool {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, off := range offs {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
		if err != nil {
			return false
		}
		held = append(held, l)
	}
	return true
}

// nodePorts are the offsets of nodes 1..3 at the given offsets of groups.
func nodePorts(groups ...int) []int {
	var out []int
	for _, g := range groups {
		out = append(out, g+1, g+2, g+3)
	}
	return out
}

// TestExample_Migrate runs examples/migrate/run.sh end to end: a
// three-node cluster with data, a backup through one node, inspect, the
// old cluster stopped, a restore, the restored node and two new ones
// started, and the history checked on a node that joined after.
func TestExample_Migrate(t *testing.T) {
	t.Parallel()
	base := freeBase(t, nodePorts(20, 30, 80, 40, 50, 90)...)
	out := runExample(t, "migrate", fmt.Sprintf("SCHAT_DEMO_BASE_PORT=%d", base))
	for _, want := range []string{"status    whole", "restored 2 users, 1 groups",
		"== moved: every check passed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestExample_SingleNode runs examples/single-node/run.sh: a node, the
// demo script through schat chat, and the node stopped.
func TestExample_SingleNode(t *testing.T) {
	t.Parallel()
	base := freeBase(t, 20, 21, 80)
	out := runExample(t, "single-node",
		fmt.Sprintf("SCHAT_DEMO_CLIENT_ADDR=127.0.0.1:%d", base+20),
		fmt.Sprintf("SCHAT_DEMO_RAFT_ADDR=127.0.0.1:%d", base+21),
		fmt.Sprintf("SCHAT_DEMO_HTTP_ADDR=127.0.0.1:%d", base+80))
	for _, want := range []string{"apply group result:WRONG_PASSWORD",
		"== done; stopping the node"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestExample_ThreeNode runs examples/three-node/run.sh: three nodes that
// form a cluster, its status, a chat through two of them and the history
// read on the third.
func TestExample_ThreeNode(t *testing.T) {
	t.Parallel()
	base := freeBase(t, nodePorts(20, 30, 80)...)
	out := runExample(t, "three-node", fmt.Sprintf("SCHAT_DEMO_BASE_PORT=%d", base))
	for _, want := range []string{"node3", "hi ann, ben here on node2",
		"== done; stopping the nodes"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
