package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// runSync measures catching up: one user in SyncGroups groups with Unread
// messages waiting in each logs in and pages through all of them, several
// groups at a time, marking each group read at its end. It reports the
// time from dialling to the first page and to the last, and the servers'
// peak resident memory and Go heap in use meanwhile next to both before.
// The peaks are sampled every peakInterval from /metrics.
func (r *runner) runSync(ctx context.Context, p *progress, m *meter) (Result, error) {
	cfg := r.cfg
	res := Result{Params: map[string]any{"groups": cfg.SyncGroups, "unread": cfg.Unread,
		"size": cfg.MessageSize, "parallel_groups": syncParallel}}

	reader, gids, err := r.syncSetup(ctx, p)
	if err != nil {
		return res, err
	}
	before, err := r.stats(ctx)
	if err != nil {
		return res, err
	}

	p.setPhase("catching up")
	stop := make(chan struct{})
	peak := make(chan serverStats, 1)
	go func() { peak <- r.peaks(ctx, stop) }()
	lat := newLatencies()
	first, all, err := r.catchUp(ctx, reader, lat, m)
	close(stop)
	r.profileHeap(ctx, SyncCatchUp)
	if err != nil {
		return res, err
	}
	if got, want := m.ops.Load(), int64(len(gids)*cfg.Unread); got < want {
		return res, fmt.Errorf("bench: caught up on %d messages, want at least %d", got, want)
	}

	res.setRate(m, all)
	res.setLatency(lat.merged())
	res.FirstPageMs = float64(first.Microseconds()) / 1000
	res.AllMs = float64(all.Microseconds()) / 1000
	pk := <-peak
	res.RSSBeforeBytes, res.PeakRSSBytes = before.rss, pk.rss
	res.HeapBeforeBytes, res.PeakHeapBytes = before.heap, pk.heap
	res.RSSBytes, res.HeapBytes = pk.rss, pk.heap
	return res, nil
}

// syncParallel is how many groups the catching-up client pages at once.
const syncParallel = 8

// syncSetup makes the reader a member of SyncGroups groups, owned by as
// few users as the server's limit on owned groups allows, and fills each
// with Unread messages.
func (r *runner) syncSetup(ctx context.Context, p *progress) (account, []uint64, error) {
	cfg := r.cfg
	readers, err := r.accounts(ctx, "r", 1)
	if err != nil {
		return account{}, nil, err
	}
	perOwner := int(r.limits().GetMaxOwnedGroups())
	owners, err := r.accounts(ctx, "o", (cfg.SyncGroups+perOwner-1)/perOwner)
	if err != nil {
		return account{}, nil, err
	}
	gids := make([]uint64, cfg.SyncGroups)
	for k := range gids {
		if gids[k], err = r.group(ctx, owners[k/perOwner], readers); err != nil {
			return account{}, nil, err
		}
	}

	p.setPhase("filling")
	text := strings.Repeat("x", cfg.MessageSize)
	err = r.parallel(ctx, len(gids), func(c *transport.Client, k int) error {
		if _, err := resume(ctx, c, owners[k/perOwner]); err != nil {
			return err
		}
		return fill(ctx, c, gids[k], cfg.Unread, cfg.InFlight, text)
	})
	return readers[0], gids, err
}

// fill sends n messages to group gid with inFlight outstanding.
func fill(ctx context.Context, c *transport.Client, gid uint64, n, inFlight int,
	text string) error {
	var next atomic.Int64
	errs := make(chan error, inFlight)
	for range inFlight {
		go func() {
			for next.Add(1) <= int64(n) {
				if _, err := c.Send(ctx, gid, text, ""); err != nil {
					errs <- fmt.Errorf("bench: fill group %d: %w", gid, err)
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range inFlight {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// catchUp logs the reader in on a new connection and pages through every
// group with unread messages from its read cursor. It returns the time
// from dialling to the first page and to the end.
func (r *runner) catchUp(ctx context.Context, reader account, lat *latencies,
	m *meter) (first, all time.Duration, err error) {
	start := time.Now()
	c, err := r.dial(ctx, 0, eventBuffer, nil)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	login, err := resume(ctx, c, reader)
	if err != nil {
		return 0, 0, err
	}

	var firstAt atomic.Int64
	groups := make(chan *pb.GroupSummary, len(login.Groups))
	for _, g := range login.Groups {
		if g.Unread > 0 {
			groups <- g
		}
	}
	close(groups)
	limit := login.GetLimits().GetMaxPage()
	var wg sync.WaitGroup
	errs := make(chan error, syncParallel)
	for w := range syncParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range groups {
				if err := readGroup(ctx, c, g.GroupId, limit, func(d time.Duration, n int) {
					lat.record(w, d)
					m.ops.Add(int64(n))
					firstAt.CompareAndSwap(0, int64(time.Since(start)))
				}); err != nil {
					m.errors.Add(1)
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return time.Duration(firstAt.Load()), time.Since(start), <-errs
}

// readGroup pages forward through group gid from the read cursor, calling
// page with each page's latency and size, and marks the group read.
func readGroup(ctx context.Context, c *transport.Client, gid uint64, limit uint32,
	page func(time.Duration, int)) error {
	after, fromCursor := uint64(0), true
	for {
		t := time.Now()
		pg, err := c.Sync(ctx, gid, after, limit, fromCursor)
		if err != nil {
			return fmt.Errorf("bench: sync group %d: %w", gid, err)
		}
		page(time.Since(t), len(pg.Messages))
		if n := len(pg.Messages); n > 0 {
			after = pg.Messages[n-1].Seq
		}
		fromCursor = false
		if !pg.More || len(pg.Messages) == 0 {
			break
		}
	}
	if _, err := c.MarkRead(ctx, gid, after); err != nil {
		return fmt.Errorf("bench: mark group %d read: %w", gid, err)
	}
	return nil
}
