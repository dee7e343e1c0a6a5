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
	id := make([]byte, 4)
	rand.Read(id)
	r := &runner{cfg: cfg, log: cfg.Logger, runID: "b" + hex.EncodeToString(id)}

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

// run runs one scenario and completes its result with the servers' memory
// and the ratio to the ceiling.
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
	if res.RSSBytes == 0 {
		st, err := r.stats(ctx)
		if err != nil {
			return res, err
		}
		res.RSSBytes, res.HeapBytes = st.rss, st.heap
	}
	if r.ceiling > 0 && (name == Send || name == Latency || name == Fanout) {
		res.CeilingRatio = res.OpsPerSec / r.ceiling
	}
	res.Params["servers"] = len(r.cfg.Addrs)
	res.Params["transport"] = "tcp"
	if r.cfg.WebSocket {
		res.Params["transport"] = "websocket"
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
