package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The system tests run the schat binary as real processes: a server with
// `schat serve`, users with `schat chat --json`, fed through stdin.

// processWait bounds how long any one process of a test may run.
const processWait = 60 * time.Second

// buildFlags are extra flags for building the binary under test.
var buildFlags []string

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// schatBinary builds the schat binary once for all tests of the package.
func schatBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("system test: builds the binary and runs a server")
	}
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "schat-cli-test-"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "schat")
		args := append([]string{"build", "-o", build.bin}, buildFlags...)
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// lockedBuffer collects a process's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a `schat serve` child process.
type testServer struct {
	clientAddr string
	httpAddr   string
	cmd        *exec.Cmd
	logs       *lockedBuffer
	exited     chan struct{}       // closed when its stderr ends
	ready      chan map[string]any // its "ready" log line
	stopOnce   sync.Once
}

// serverOptions choose what startServer passes to `schat serve`.
type serverOptions struct {
	dataDir    string // default: a fresh temporary directory
	clientAddr string // default: 127.0.0.1:0, and the same for the others
	httpAddr   string
	raftAddr   string
	extra      []string
}

// startServer starts a server and waits until it logs that it is ready.
func startServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	s := launchServer(t, o)
	s.waitReady(t)
	return s
}

// launchServer starts a server without waiting for it: nodes that form a
// cluster together become ready only once they all run.
func launchServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	bin := schatBinary(t)
	or := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	args := append([]string{"serve", "--log-format", "json",
		"--data-dir", or(o.dataDir, filepath.Join(t.TempDir(), "data")),
		"--client-addr", or(o.clientAddr, "127.0.0.1:0"),
		"--http-addr", or(o.httpAddr, "127.0.0.1:0"),
		"--raft-addr", or(o.raftAddr, "127.0.0.1:0")}, o.extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &testServer{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan struct{}),
		ready: make(chan map[string]any, 1)}
	t.Cleanup(func() { s.stop(t) })
	go s.readLog(stderr)
	return s
}

// waitReady waits until the server logs that it is ready and reads its
// addresses from that line.
func (s *testServer) waitReady(t testing.TB) {
	t.Helper()
	select {
	case line := <-s.ready:
		s.clientAddr, _ = line["client_addr"].(string)
		s.httpAddr, _ = line["http_addr"].(string)
	case <-s.exited:
		t.Fatalf("server exited before it was ready; log:\n%s", s.logs)
	case <-time.After(processWait):
		t.Fatalf("server not ready within %v; log:\n%s", processWait, s.logs)
	}
}

// readLog keeps the server's log and hands over its "ready" line.
func (s *testServer) readLog(r io.Reader) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintln(s.logs, sc.Text())
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			line = textLogLine(sc.Text())
		}
		if line["msg"] == "ready" {
			select {
			case s.ready <- line:
			default:
			}
		}
	}
}

// textLogLine reads the key=value pairs of a line that slog's text handler
// wrote, as far as its values are unquoted (enough for the "ready" line).
func textLogLine(s string) map[string]any {
	line := make(map[string]any)
	for _, kv := range strings.Fields(s) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			line[k] = v
		}
	}
	return line
}

// stop interrupts the server and waits for it to exit.
func (s *testServer) stop(t testing.TB) {
	s.stopWith(t, os.Interrupt)
}

// stopWith sends sig to the server, waits for it to exit and returns how
// it exited. Only the first stop or kill of a server acts; later ones
// return nil.
func (s *testServer) stopWith(t testing.TB, sig os.Signal) error {
	var err error
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(sig)
		select {
		case <-s.exited:
		case <-time.After(processWait):
			t.Errorf("server did not stop within %v; killing it", processWait)
			s.cmd.Process.Kill()
			<-s.exited
		}
		err = s.cmd.Wait()
	})
	return err
}

// kill ends the server with SIGKILL, as a crash or power cut would, giving
// it no chance to close its files, and waits until it is gone.
func (s *testServer) kill(t testing.TB) {
	s.stopOnce.Do(func() {
		if err := s.cmd.Process.Kill(); err != nil {
			t.Errorf("kill server: %v", err)
		}
		<-s.exited
		s.cmd.Wait()
	})
}

// freeAddr returns a local address that was free a moment ago, for a test
// that must restart a server on the same addresses.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// line is one printed JSON line of `schat chat --json`.
type line map[string]any

func (l line) str(k string) string {
	s, _ := l[k].(string)
	return s
}

func (l line) num(k string) uint64 {
	f, _ := l[k].(float64)
	return uint64(f)
}

func (l line) list(k string) []line {
	raw, _ := l[k].([]any)
	out := make([]line, len(raw))
	for i, r := range raw {
		m, _ := r.(map[string]any)
		out[i] = m
	}
	return out
}

// parseLines decodes every line of out as one JSON object.
func parseLines(t testing.TB, out string) []line {
	t.Helper()
	var ls []line
	for _, s := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if s == "" {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("output line is not one JSON object: %q: %v", s, err)
		}
		ls = append(ls, l)
	}
	return ls
}

// scriptRun is the output of one `schat chat --json` run of a script.
type scriptRun struct {
	results []line // one per command, in order
	events  []line
	stderr  string
	err     error // from the process's exit
}

// event returns the first event named name that match accepts.
func (r scriptRun) event(name string, match func(line) bool) (line, bool) {
	for _, e := range r.events {
		if e.str("event") == name && (match == nil || match(e)) {
			return e, true
		}
	}
	return nil, false
}

// script pipes a script into `schat chat --json --addr addr` and returns
// what it printed. It fails the test unless there is exactly one result per
// command and the exit status says whether any failed.
func script(t testing.TB, addr, text string, args ...string) scriptRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, schatBinary(t),
		append([]string{"chat", "--json", "--addr", addr}, args...)...)
	cmd.Stdin = strings.NewReader(text)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	run := scriptRun{err: cmd.Run(), stderr: stderr.String()}

	failed := 0
	for _, l := range parseLines(t, stdout.String()) {
		if _, ok := l["cmd"]; ok {
			run.results = append(run.results, l)
			if l["ok"] != true {
				failed++
			}
		} else {
			run.events = append(run.events, l)
		}
	}
	if got, want := len(run.results), commandCount(text); got != want {
		t.Fatalf("got %d results, want %d; output:\n%s\nstderr:\n%s", got, want,
			stdout.String(), run.stderr)
	}
	var exit *exec.ExitError
	switch {
	case failed == 0 && run.err != nil:
		t.Fatalf("got exit %v with every command OK, want 0; stderr:\n%s", run.err, run.stderr)
	case failed > 0 && !(errors.As(run.err, &exit) && exit.ExitCode() == 1):
		t.Fatalf("got exit %v with %d failed commands, want status 1", run.err, failed)
	}
	return run
}

// commandCount counts a script's command lines.
func commandCount(text string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// wantResult fails the test unless r answers cmd with code.
func wantResult(t testing.TB, r line, cmd, code string) {
	t.Helper()
	if r.str("cmd") != cmd || r.str("code") != code || (r["ok"] == true) != (code == codeOK) {
		t.Fatalf("got result %v, want cmd %q with code %s", r, cmd, code)
	}
}

// liveChat is a `schat chat --json` process fed one command at a time, for
// tests that watch events arrive.
type liveChat struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan line
	events []line // events read so far and not yet claimed by waitEvent
	stderr *lockedBuffer
}

func startChat(t testing.TB, addr string, args ...string) *liveChat {
	t.Helper()
	cmd := exec.Command(schatBinary(t), append([]string{"chat", "--json", "--addr", addr},
		args...)...)
	c := &liveChat{t: t, cmd: cmd, lines: make(chan line, 100), stderr: &lockedBuffer{}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	go c.read(stdout)
	return c
}

func (c *liveChat) read(r io.Reader) {
	defer close(c.lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = line{"unparsed": sc.Text()}
		}
		c.lines <- l
	}
}

// next returns the next printed line, failing the test at the deadline.
func (c *liveChat) next(deadline <-chan time.Time) line {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("chat process ended early; stderr:\n%s", c.stderr)
		}
		if s, bad := l["unparsed"]; bad {
			c.t.Fatalf("output line is not one JSON object: %q", s)
		}
		return l
	case <-deadline:
		c.t.Fatalf("no output within %v; stderr:\n%s", processWait, c.stderr)
	}
	return nil
}

// do runs one command and returns its result, keeping the events printed
// meanwhile.
func (c *liveChat) do(command string) line {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, command+"\n"); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.After(processWait)
	for {
		l := c.next(deadline)
		if _, ok := l["cmd"]; ok {
			return l
		}
		c.events = append(c.events, l)
	}
}

// waitEvent returns the first event named name that match accepts,
// reading more output until it arrives or the deadline passes.
func (c *liveChat) waitEvent(name string, match func(line) bool) line {
	c.t.Helper()
	deadline := time.After(processWait)
	for checked := 0; ; {
		for ; checked < len(c.events); checked++ {
			e := c.events[checked]
			if e.str("event") == name && (match == nil || match(e)) {
				c.events = append(c.events[:checked], c.events[checked+1:]...)
				return e
			}
		}
		c.events = append(c.events, c.next(deadline))
	}
}

// finish closes stdin and waits for the process to exit with status 0.
func (c *liveChat) finish() {
	c.t.Helper()
	c.stdin.Close()
	for range c.lines {
	}
	if err := c.cmd.Wait(); err != nil {
		c.t.Fatalf("chat exited with %v; stderr:\n%s", err, c.stderr)
	}
}
