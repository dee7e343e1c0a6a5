package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/schat/schat/transport"
)

// Node is one running schat node. New starts it; Close stops it.
type Node struct {
	cfg  Config
	log  *slog.Logger
	info dirInfo

	ctx    context.Context // ends when Close begins
	cancel context.CancelFunc

	mux     *transport.Mux
	shards  []*shard // [0] is the meta shard, [1..K] the group shards
	hub     *hub
	svc     *service
	srv     *transport.Server
	metrics *metrics

	clientLn net.Listener
	httpLn   net.Listener
	httpSrv  *http.Server
	wg       sync.WaitGroup
}

// New opens the data directory, starts every shard's raft and begins
// serving clients. A new data directory is bootstrapped as a one-node
// cluster.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, hub: newHub()}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	steps := []func() error{n.openDir, n.openMux, n.openShards, n.openService,
		n.listenClients, n.listenHTTP}
	for _, step := range steps {
		if err := step(); err != nil {
			n.Close()
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.maintain()
	n.log.Info("node started", "node", cfg.NodeID, "shards", n.info.Shards,
		"client_addr", n.ClientAddr(), "http_addr", n.HTTPAddr(), "raft_addr", n.RaftAddr())
	return n, nil
}

func (n *Node) openDir() error {
	info, created, err := openDataDir(n.cfg.DataDir, n.cfg.NodeID, n.cfg.Shards, n.cfg.explicitShards)
	if err != nil {
		return err
	}
	if created {
		n.log.Info("created data directory", "dir", n.cfg.DataDir, "shards", info.Shards)
	}
	n.info = info
	return nil
}

func (n *Node) openMux() error {
	ln, err := net.Listen("tcp", n.cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("node: raft listener: %w", err)
	}
	n.mux, err = transport.NewMux(transport.MuxConfig{Listener: ln,
		Advertise: n.cfg.RaftAdvertise, Logger: n.log})
	if err != nil {
		ln.Close()
	}
	return err
}

func (n *Node) openShards() error {
	for id := uint32(0); id <= uint32(n.info.Shards); id++ {
		sh, err := openShard(shardConfig{id: id, dataDir: n.cfg.DataDir, nodeID: n.cfg.NodeID,
			tuning: n.cfg.Raft, mux: n.mux, publish: n.hub.publish, bootstrap: true,
			applyTimeout: n.cfg.ApplyTimeout, logger: n.log})
		if err != nil {
			return err
		}
		n.shards = append(n.shards, sh)
	}
	return nil
}

func (n *Node) openService() error {
	n.metrics = newMetrics(n)
	n.svc = &service{n: n, limiter: newRateLimiter(n.cfg.RatePerMinute)}
	srv, err := transport.NewServer(transport.ServerConfig{Handler: n.svc, TLS: n.cfg.TLS,
		Logger: n.log})
	n.srv = srv
	return err
}

func (n *Node) listenClients() error {
	if n.cfg.ClientAddr == "" {
		return nil
	}
	// The transport server does the TLS handshake on this listener.
	ln, err := net.Listen("tcp", n.cfg.ClientAddr)
	if err != nil {
		return fmt.Errorf("node: client listener: %w", err)
	}
	n.clientLn = ln
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.srv.ServeTCP(ln)
	}()
	return nil
}

func (n *Node) listenHTTP() error {
	if n.cfg.HTTPAddr == "" {
		return nil
	}
	ln, err := listen(n.cfg.HTTPAddr, n.cfg.TLS)
	if err != nil {
		return fmt.Errorf("node: http listener: %w", err)
	}
	n.httpLn = ln
	n.httpSrv = &http.Server{Handler: n.routes(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.httpSrv.Serve(ln)
	}()
	return nil
}

func listen(addr string, cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || cfg == nil {
		return ln, err
	}
	return tls.NewListener(ln, cfg), nil
}

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", n.srv.WebSocket())
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// ready reports whether every shard has a leader.
func (n *Node) ready() error {
	if n.ctx.Err() != nil {
		return errClosed
	}
	for _, sh := range n.shards {
		if addr, _ := sh.raft.LeaderWithID(); addr == "" {
			return fmt.Errorf("shard %s has no leader", shardLabel(sh.id))
		}
	}
	return nil
}

// WaitReady blocks until every shard has a leader or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	for _, sh := range n.shards {
		for {
			if addr, _ := sh.raft.LeaderWithID(); addr != "" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("shard %s: %w", shardLabel(sh.id), ctx.Err())
			case <-sh.raft.LeaderCh():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// ClientAddr is the bound TCP client address ("" when disabled).
func (n *Node) ClientAddr() string { return addrOf(n.clientLn) }

// HTTPAddr is the bound HTTP address ("" when disabled).
func (n *Node) HTTPAddr() string { return addrOf(n.httpLn) }

// RaftAddr is the address other nodes dial.
func (n *Node) RaftAddr() string {
	if n.mux == nil {
		return ""
	}
	return n.mux.Addr().String()
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Close stops serving clients, then shuts raft down and closes the files:
// clients first, then transport, raft and storage.
func (n *Node) Close() error {
	n.cancel()
	var errs []error
	if n.srv != nil {
		errs = append(errs, n.srv.Close())
	}
	if n.httpSrv != nil {
		errs = append(errs, n.httpSrv.Close())
	}
	n.wg.Wait()
	for i := len(n.shards) - 1; i >= 0; i-- {
		errs = append(errs, n.shards[i].close())
	}
	if n.mux != nil {
		errs = append(errs, n.mux.Close())
	}
	err := errors.Join(errs...)
	if errors.Is(err, raft.ErrRaftShutdown) {
		err = nil
	}
	n.log.Info("node stopped", "node", n.cfg.NodeID)
	return err
}
