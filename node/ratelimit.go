package node

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	pb "github.com/schat/schat/proto"
)

// rateLimiter gives each client address a token bucket for the requests
// that cost the server a password hash or invite abuse (register, login,
// apply). x/time/rate supplies the bucket; this type only keys and prunes.
type rateLimiter struct {
	perMinute int

	mu      sync.Mutex
	buckets map[string]*bucket
	pruned  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxBuckets bounds the limiter's memory however many addresses appear.
const maxBuckets = 100_000

func newRateLimiter(perMinute int) *rateLimiter {
	return &rateLimiter{perMinute: perMinute, buckets: make(map[string]*bucket)}
}

// allow takes a token for ip, or returns a RATE_LIMITED error.
func (r *rateLimiter) allow(ip string) error {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune(now)
	b := r.buckets[ip]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			return pb.Errf(pb.Code_RATE_LIMITED, "server busy, try again later")
		}
		every := time.Minute / time.Duration(r.perMinute)
		b = &bucket{lim: rate.NewLimiter(rate.Every(every), r.perMinute/3+1)}
		r.buckets[ip] = b
	}
	b.seen = now
	if !b.lim.AllowN(now, 1) {
		return pb.Errf(pb.Code_RATE_LIMITED, "too many attempts, slow down")
	}
	return nil
}

// prune drops buckets idle long enough to have refilled, once a minute.
func (r *rateLimiter) prune(now time.Time) {
	if now.Sub(r.pruned) < time.Minute {
		return
	}
	r.pruned = now
	for ip, b := range r.buckets {
		if now.Sub(b.seen) > 5*time.Minute {
			delete(r.buckets, ip)
		}
	}
}
