package node

import (
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	pb "github.com/schat/schat/proto"
)

// rateLimiter gives each key (a client address or a user) a token bucket
// for the requests that cost the server a password hash or invite abuse.
// x/time/rate supplies the buckets; this type only keys and prunes them.
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

// maxBuckets bounds the limiter's memory however many keys appear.
const maxBuckets = 100_000

func newRateLimiter(perMinute int) *rateLimiter {
	return &rateLimiter{perMinute: perMinute, buckets: make(map[string]*bucket)}
}

// addrKey and userKey name the buckets of a client address and a user.
func addrKey(ip string) string  { return "addr " + ip }
func userKey(uid uint64) string { return "user " + strconv.FormatUint(uid, 10) }

// allow takes a token from the bucket of every key, or from none of them
// and returns a RATE_LIMITED error.
func (r *rateLimiter) allow(keys ...string) error {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune(now)
	taken := make([]*rate.Reservation, 0, len(keys))
	refuse := func(err error) error {
		for _, res := range taken {
			res.CancelAt(now)
		}
		return err
	}
	for _, k := range keys {
		b := r.bucket(k, now)
		if b == nil {
			return refuse(pb.Errf(pb.Code_RATE_LIMITED, "server busy, try again later"))
		}
		res := b.lim.ReserveN(now, 1)
		if !res.OK() || res.DelayFrom(now) > 0 {
			res.CancelAt(now)
			return refuse(pb.Errf(pb.Code_RATE_LIMITED, "too many attempts, slow down"))
		}
		taken = append(taken, res)
	}
	return nil
}

// bucket returns key's bucket, made full if it is new, or nil when the
// limiter holds as many as it may.
func (r *rateLimiter) bucket(key string, now time.Time) *bucket {
	b := r.buckets[key]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			return nil
		}
		every := time.Minute / time.Duration(r.perMinute)
		b = &bucket{lim: rate.NewLimiter(rate.Every(every), r.perMinute/3+1)}
		r.buckets[key] = b
	}
	b.seen = now
	return b
}

// prune drops buckets idle long enough to have refilled, once a minute.
func (r *rateLimiter) prune(now time.Time) {
	if now.Sub(r.pruned) < time.Minute {
		return
	}
	r.pruned = now
	for k, b := range r.buckets {
		if now.Sub(b.seen) > 5*time.Minute {
			delete(r.buckets, k)
		}
	}
}

// limit takes a token for a request from the client's address and, when
// perUser is set and the session is logged in, from its user: a stolen
// token used from many addresses still gets one user's share.
func (s *service) limit(ss *session, perUser bool) error {
	keys := []string{addrKey(ss.ip)}
	if uid, _ := ss.identity(); perUser && uid != 0 {
		keys = append(keys, userKey(uid))
	}
	return s.limiter.allow(keys...)
}

// limitHash limits, per user, a request that sets a join password, which
// costs a hash; one that sets none costs nothing. Only logged-in users
// make these, and accounts are limited per address where they are made.
func (s *service) limitHash(ss *session, joinPassword string) error {
	if joinPassword == "" {
		return nil
	}
	uid, _ := ss.identity()
	return s.limiter.allow(userKey(uid))
}
