package main

import (
	"bufio"
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
	"time"
)

// benchServer is a `schat serve` child process that schat bench starts
// when it is given no server: a process of its own, so that its memory is
// measured apart from the load generator's.
type benchServer struct {
	cmd        *exec.Cmd
	clientAddr string
	httpAddr   string
	ready      chan map[string]any
	exited     chan struct{} // closed when its log ends

	mu   sync.Mutex
	tail []string // the last lines of its log, for errors
}

// benchServeFlags are the serve flags of a child: a rate limit that lets
// the set-up register thousands of users from one address, and the
// cheapest password hash, so that the set-up measures nothing.
var benchServeFlags = []string{"--rate-per-minute", "100000000",
	"--argon2-memory-kib", "1024", "--argon2-time", "1", "--log-format", "json"}

// startBenchServers starts n nodes with their data under dir, the given
// cluster secret and shards group shards: one node, or n nodes that form a
// cluster together, and waits until all are ready.
func startBenchServers(ctx context.Context, dir, secret string, n, shards int) (
	[]*benchServer, error) {
	raftAddrs, err := freeAddrs(n)
	if err != nil {
		return nil, err
	}
	var servers []*benchServer
	for i := range n {
		args := []string{"serve", "--node-id", fmt.Sprintf("node%d", i+1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("node%d", i+1)),
			"--client-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--raft-addr", raftAddrs[i], "--shards", fmt.Sprint(shards)}
		if n > 1 {
			others := append(append([]string{}, raftAddrs[:i]...), raftAddrs[i+1:]...)
			args = append(args, "--join", strings.Join(others, ","),
				"--bootstrap-expect", fmt.Sprint(n))
		}
		s, err := startBenchServer(append(args, benchServeFlags...), secret)
		if err != nil {
			stopBenchServers(servers)
			return nil, err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := s.waitReady(ctx); err != nil {
			stopBenchServers(servers)
			return nil, err
		}
	}
	return servers, nil
}

// freeAddrs returns n loopback addresses that were free a moment ago: the
// nodes of a cluster must know each other's addresses before they start.
func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		out = append(out, ln.Addr().String())
		ln.Close()
	}
	return out, nil
}

// startBenchServer starts this binary with args; the cluster secret goes
// through the environment, not the command line.
func startBenchServer(args []string, secret string) (*benchServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: find the schat binary: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "SCHAT_CLUSTER_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start server: %w", err)
	}
	s := &benchServer{cmd: cmd, ready: make(chan map[string]any, 1),
		exited: make(chan struct{})}
	go s.readLog(stderr)
	return s, nil
}

// readLog keeps the tail of the server's log and hands over its "ready"
// line.
func (s *benchServer) readLog(r io.Reader) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.mu.Lock()
		s.tail = append(s.tail[max(0, len(s.tail)-20):], sc.Text())
		s.mu.Unlock()
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "ready" {
			select {
			case s.ready <- line:
			default:
			}
		}
	}
}

// waitReady waits until the server logs that it is ready and takes its
// addresses from that line.
func (s *benchServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	select {
	case line := <-s.ready:
		s.clientAddr, _ = line["client_addr"].(string)
		s.httpAddr, _ = line["http_addr"].(string)
		return nil
	case <-s.exited:
		return fmt.Errorf("bench: server exited before it was ready; its log ends:\n%s", s.log())
	case <-ctx.Done():
		return fmt.Errorf("bench: server not ready: %w; its log ends:\n%s", ctx.Err(), s.log())
	}
}

func (s *benchServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// stop interrupts the server and waits for it to exit, killing it if it
// takes longer than half a minute.
func (s *benchServer) stop() error {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return s.cmd.Wait()
}

// stopBenchServers stops every server.
func stopBenchServers(servers []*benchServer) error {
	var errs []error
	for _, s := range servers {
		if err := s.stop(); err != nil {
			errs = append(errs, fmt.Errorf("bench: server: %w", err))
		}
	}
	return errors.Join(errs...)
}
