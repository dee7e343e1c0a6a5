package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progress rewrites one status line on a terminal every half second while
// a scenario runs: its phase, elapsed time, counts and current rate.
type progress struct {
	w        io.Writer
	scenario string
	m        *meter
	start    time.Time

	mu    sync.Mutex
	phase string

	stop chan struct{}
	done chan struct{}
}

// startProgress starts the line on w; with a nil w it does nothing.
func startProgress(w io.Writer, scenario string, m *meter) *progress {
	p := &progress{w: w, scenario: scenario, m: m, start: time.Now(), phase: "set-up",
		stop: make(chan struct{}), done: make(chan struct{})}
	if w == nil {
		close(p.done)
		return p
	}
	go p.loop()
	return p
}

// setPhase names what the scenario is doing now, and restarts the clock.
func (p *progress) setPhase(phase string) {
	p.mu.Lock()
	p.phase, p.start = phase, time.Now()
	p.mu.Unlock()
}

func (p *progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var lastOps int64
	last := time.Now()
	for {
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case now := <-tick.C:
			ops := p.m.ops.Load()
			rate := float64(ops-lastOps) / now.Sub(last).Seconds()
			lastOps, last = ops, now
			p.mu.Lock()
			phase, since := p.phase, now.Sub(p.start)
			p.mu.Unlock()
			fmt.Fprintf(p.w, "\r\033[K%s %s %5.1fs  ops %d (%.0f/s)  deliveries %d  errors %d",
				p.scenario, phase, since.Seconds(), ops, rate, p.m.deliveries.Load(),
				p.m.errors.Load())
		}
	}
}

// end clears the line.
func (p *progress) end() {
	if p.w != nil {
		close(p.stop)
	}
	<-p.done
}
