package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/schat/schat/proto"
)

// runner carries what the scenarios of one run share.
type runner struct {
	cfg   Config
	log   *slog.Logger
	runID string // prefixes user names, so runs against one server differ

	limitsOnce   sync.Once
	serverLimits *pb.Limits // as the first login of the run reported

	ceiling  float64 // the ceiling's applies per second, once measured
	sendPeak float64 // send's acknowledged sends per second, once measured
}

// scenarioFunc runs one scenario; its progress goes through p and m.
type scenarioFunc func(r *runner, ctx context.Context, p *progress, m *meter) (Result, error)

var scenarioFuncs = map[string]scenarioFunc{
	Ceiling:     (*runner).runCeiling,
	Send:        (*runner).runSend,
	Latency:     (*runner).runLatency,
	Fanout:      (*runner).runFanout,
	Connections: (*runner).runConnections,
	SyncCatchUp: (*runner).runSync,
}

// Run runs the named scenarios, in the order of Scenarios whatever order
// they are given in, and returns a result for each that finished. It stops
// at the first scenario that fails to run (a failed request during the
// measurement is counted in Errors instead).
func Run(ctx context.Context, cfg Config, scenarios []string) ([]Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(scenarios); err != nil {
		return nil, err
	}
	warnUnmeasured(cfg, scenarios)
	return newRunner(cfg).runAll(ctx, scenarios)
}

// Servers are the nodes of one cluster to measure, as RunSizes's start
// function started them.
type Servers struct {
	Addrs     []string // TCP client addresses
	HTTPAddrs []string // HTTP addresses, one per client address
	Secret    string   // the cluster secret, to fetch profiles
	// Stop stops the servers and removes what they left.
	Stop func() error
}

// RunSizes runs the scenarios against clusters of each size in sizes, one
// after another, each started by start and stopped before the next: the
// ceiling once, first, so that every cluster's figures are ratios to the
// same ceiling; then the other scenarios on each cluster. Once a single
// node has run, the send and fanout figures of larger clusters also get
// their ratio to the single node's (OneNodeRatio). cfg's addresses are
// ignored.
func RunSizes(ctx context.Context, cfg Config, scenarios []string, sizes []int,
	start func(ctx context.Context, n int) (Servers, error)) ([]Result, error) {
	cfg = cfg.withDefaults()
	for _, n := range sizes {
		probe := cfg
		probe.Addrs, probe.HTTPAddrs = make([]string, n), make([]string, n)
		probe.Secret = "set by start"
		if err := probe.Validate(scenarios); err != nil {
			return nil, err
		}
		if n < 1 {
			return nil, fmt.Errorf("%w: a cluster of %d nodes", ErrInvalidConfig, n)
		}
	}
	r := newRunner(cfg)
	var results []Result
	if slices.Contains(scenarios, Ceiling) {
		res, err := r.run(ctx, Ceiling)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", Ceiling, err)
		}
		results = append(results, res)
	}
	if !needsServers(scenarios) {
		return results, nil
	}
	rest := slices.DeleteFunc(slices.Clone(scenarios), func(s string) bool { return s == Ceiling })
	oneNode := map[string]float64{}
	for _, n := range sizes {
		out, err := r.runCluster(ctx, n, rest, start)
		for i := range out {
			setOneNodeRatio(&out[i], n, oneNode)
		}
		results = append(results, out...)
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

// runCluster starts a cluster of n nodes, runs scenarios on it and stops
// it.
func (r *runner) runCluster(ctx context.Context, n int, scenarios []string,
	start func(ctx context.Context, n int) (Servers, error)) (res []Result, err error) {
	r.log.Info("starting servers", "nodes", n)
	srv, err := start(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("bench: start %d servers: %w", n, err)
	}
	defer func() {
		if stopErr := srv.Stop(); err == nil && stopErr != nil {
			err = fmt.Errorf("bench: stop %d servers: %w", n, stopErr)
		}
	}()
	r.cfg.Addrs, r.cfg.HTTPAddrs, r.cfg.Secret = srv.Addrs, srv.HTTPAddrs, srv.Secret
	r.sendPeak = 0
	return r.runAll(ctx, scenarios)
}

// setOneNodeRatio records a single node's headline figures in oneNode,
// and gives a larger cluster's send and fanout their ratio to them.
func setOneNodeRatio(res *Result, nodes int, oneNode map[string]float64) {
	figure := res.OpsPerSec
	switch res.Scenario {
	case Send:
	case Fanout:
		figure = res.DeliveriesPerSec
	default:
		return
	}
	if nodes == 1 {
		oneNode[res.Scenario] = figure
	} else if base := oneNode[res.Scenario]; base > 0 {
		res.OneNodeRatio = figure / base
	}
}

func newRunner(cfg Config) *runner {
	id := make([]byte, 4)
	rand.Read(id)
	return &runner{cfg: cfg, log: cfg.Logger, runID: "b" + hex.EncodeToString(id)}
}

// runAll runs those of Scenarios that are named, in that order.
func (r *runner) runAll(ctx context.Context, scenarios []string) ([]Result, error) {
	var results []Result
	for _, name := range Scenarios {
		if !slices.Contains(scenarios, name) {
			continue
		}
		res, err := r.run(ctx, name)
		if err != nil {
			return results, fmt.Errorf("bench: %s: %w", name, err)
		}
		results = append(results, res)
	}
	return results, nil
}

// warnUnmeasured warns about what a run without the servers' HTTP
// addresses cannot measure.
func warnUnmeasured(cfg Config, scenarios []string) {
	if len(cfg.HTTPAddrs) > 0 || !needsServers(scenarios) {
		return
	}
	cfg.Logger.Warn("no HTTP addresses of the servers (--http-addr): " +
		"server memory is not measured and reads 0")
	if cfg.ProfileDir != "" {
		cfg.Logger.Warn("no HTTP addresses of the servers (--http-addr): " +
			"only the load generator is profiled")
	}
}

// run runs one scenario and completes its result with the servers' memory
// (but for the ceiling, which runs in this process) and the ratio to the
// ceiling.
func (r *runner) run(ctx context.Context, name string) (Result, error) {
	var m meter
	stopProfile, err := r.profileSelf(name)
	if err != nil {
		return Result{}, err
	}
	p := startProgress(r.cfg.Progress, name, &m)
	r.log.Info("scenario starting", "scenario", name)
	res, err := scenarioFuncs[name](r, ctx, p, &m)
	p.end()
	stopProfile()
	if err != nil {
		return res, err
	}
	res.Scenario = name
	if name != Ceiling {
		st, err := r.stats(ctx)
		if err != nil {
			return res, err
		}
		if res.RSSBytes == 0 {
			res.RSSBytes, res.HeapBytes = st.rss, st.heap
		}
		if n := st.groupShards(len(r.cfg.HTTPAddrs)); n > 0 {
			res.Params["group_shards"] = n
		}
	}
	if r.ceiling > 0 && (name == Send || name == Latency || name == Fanout) {
		res.CeilingRatio = res.OpsPerSec / r.ceiling
	}
	if name != Ceiling {
		res.Params["servers"] = len(r.cfg.Addrs)
		res.Params["transport"] = "tcp"
		if r.cfg.WebSocket {
			res.Params["transport"] = "websocket"
		}
	}
	r.log.Info("scenario done", "scenario", name, "ops_per_sec", res.OpsPerSec,
		"errors", res.Errors)
	return res, nil
}

// text returns a message text of the configured size that starts with
// stamp, the time since base in nanoseconds, so that a receiver can tell
// how long it took to arrive.
func (r *runner) text(base time.Time, now time.Time) string {
	stamp := fmt.Sprintf("%d ", now.Sub(base).Nanoseconds())
	if len(stamp) >= r.cfg.MessageSize {
		return stamp
	}
	return stamp + strings.Repeat("x", r.cfg.MessageSize-len(stamp))
}

// stampOf reads the time a text made by text was stamped with.
func stampOf(base time.Time, text string) (time.Time, bool) {
	head, _, ok := strings.Cut(text, " ")
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return base.Add(time.Duration(ns)), true
}
