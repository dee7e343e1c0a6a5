package bench

import (
	"context"
	"sync"
	"time"

	"github.com/schat/schat/transport"
)

// runConnections measures what idle connections cost the server: Conns
// connections, each logged in (by session token) as one of ConnUsers
// users, then left idle. Memory per connection is the growth of the
// servers' RSS and Go heap over the count; the latency is each
// connection's dial and login.
func (r *runner) runConnections(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	res := Result{Params: map[string]any{"conns": cfg.Conns, "users": cfg.ConnUsers}}

	users, err := r.accounts(ctx, "c", cfg.ConnUsers)
	if err != nil {
		return res, err
	}
	before, err := r.steady(ctx)
	if err != nil {
		return res, err
	}

	p.setPhase("connecting")
	lat := newLatencies()
	start := time.Now()
	clients := r.openIdle(ctx, users, lat, m)
	defer closeAll(clients)
	elapsed := time.Since(start)

	p.setPhase("measuring")
	after, err := r.settled(ctx, before.sessions+m.ops.Load())
	if err != nil {
		return res, err
	}
	r.profileHeap(ctx, Connections)
	m.errors.Add(lost(clients))
	res.setRate(m, elapsed)
	res.setLatency(lat.merged())
	res.RSSBytes, res.HeapBytes, res.RSSBeforeBytes = after.rss, after.heap, before.rss
	if n := float64(m.ops.Load()); n > 0 {
		res.RSSPerConnBytes = float64(after.rss-before.rss) / n
		res.HeapPerConnBytes = float64(after.heap-before.heap) / n
		res.StackPerConnBytes = float64(after.stack-before.stack) / n
	}
	return res, nil
}

// idleEvents is the event buffer of an idle connection's client.
const idleEvents = 16

// openIdle opens Conns logged-in connections from 64 goroutines, users
// taken in turn. A connection that fails is counted in m.errors.
func (r *runner) openIdle(ctx context.Context, users []account, lat *latencies,
	m *meter) []*transport.Client {
	clients := make([]*transport.Client, r.cfg.Conns)
	var wg sync.WaitGroup
	const dialers = 64
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(clients) && ctx.Err() == nil; i += dialers {
				t := time.Now()
				c, err := r.connect(ctx, i, users[i%len(users)], idleEvents, nil)
				if err != nil {
					m.errors.Add(1)
					continue
				}
				lat.record(w, time.Since(t))
				m.ops.Add(1)
				clients[i] = c
			}
		}()
	}
	wg.Wait()
	return clients
}

// steady waits until the servers' count of sessions has stopped moving
// (the set-up's connections are closed but a server may not have noticed
// yet) and returns their figures then.
func (r *runner) steady(ctx context.Context) (serverStats, error) {
	prev, err := r.stats(ctx)
	for still := 0; err == nil && still < 3; {
		select {
		case <-ctx.Done():
			return prev, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		var st serverStats
		if st, err = r.stats(ctx); st.sessions == prev.sessions {
			still++
		} else {
			still = 0
		}
		prev = st
	}
	return prev, err
}

// settled waits until the servers count at least sessions logged-in
// sessions and returns their figures then. Without HTTP addresses there
// is nothing to read and it returns zeroes at once.
func (r *runner) settled(ctx context.Context, sessions int64) (serverStats, error) {
	if len(r.cfg.HTTPAddrs) == 0 {
		return serverStats{}, nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := r.stats(ctx)
		if err != nil || st.sessions >= sessions || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
