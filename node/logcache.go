package node

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps recent raft log entries in memory in front of the log
// store, as raft's own LogCache does, but bounded in bytes rather than in
// entries: an entry larger than maxEntry is never kept, and the entries
// kept hold at most maxBytes in all, the oldest going first. Chat entries
// (one command, or a batch of small ones) stay cached, so replication and
// apply read them from memory; upload chunks, which would pin tens of MiB
// per upload, are read back from the log store when raft needs them.
//
// raft calls it from several goroutines; mu guards the cache, not the
// store, which is safe for concurrent use itself.
type logCache struct {
	store    raft.LogStore
	maxEntry int
	maxBytes int

	mu    sync.RWMutex
	slots []*raft.Log // by index modulo len(slots)
	order []uint64    // cached indices, oldest first; may name replaced slots
	bytes int         // sum of entrySize over the occupied slots
}

// Log cache bounds: the 512 most recent entries, as before, of at most
// 64 KiB each and 8 MiB in all. A batch of 256 short messages is about
// 60 KiB; an upload chunk is 256 KiB.
const (
	logCacheSlots    = 512
	logCacheMaxEntry = 64 << 10
	logCacheMaxBytes = 8 << 20
)

func newLogCache(store raft.LogStore, slots, maxEntry, maxBytes int) (*logCache, error) {
	if slots <= 0 || maxEntry <= 0 || maxBytes < maxEntry {
		return nil, fmt.Errorf("node: log cache of %d slots, %d bytes per entry, %d in all",
			slots, maxEntry, maxBytes)
	}
	return &logCache{store: store, maxEntry: maxEntry, maxBytes: maxBytes,
		slots: make([]*raft.Log, slots)}, nil
}

// entrySize is what a cached entry holds in memory, near enough.
func entrySize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 64 }

// cached reports how many bytes the cache holds.
func (c *logCache) cached() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes
}

// GetLog reads entry idx from the cache, or else from the store.
func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	l := c.slots[idx%uint64(len(c.slots))]
	c.mu.RUnlock()
	if l != nil && l.Index == idx {
		*log = *l
		return nil
	}
	return c.store.GetLog(idx, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs writes logs to the store and then caches those that fit.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		c.add(l)
	}
	return nil
}

// add caches l if it is small enough, making room by dropping the oldest
// entries. The caller holds mu.
func (c *logCache) add(l *raft.Log) {
	slot := &c.slots[l.Index%uint64(len(c.slots))]
	if *slot != nil {
		c.bytes -= entrySize(*slot)
		*slot = nil
	}
	size := entrySize(l)
	if size > c.maxEntry {
		return
	}
	for len(c.order) > 0 && (c.bytes+size > c.maxBytes || len(c.order) >= len(c.slots)) {
		c.dropOldest()
	}
	*slot = l
	c.bytes += size
	c.order = append(c.order, l.Index)
}

// dropOldest uncaches the oldest index in order, if its slot still holds
// it. The caller holds mu and has checked that order is not empty.
func (c *logCache) dropOldest() {
	idx := c.order[0]
	c.order = c.order[1:]
	slot := &c.slots[idx%uint64(len(c.slots))]
	if *slot != nil && (*slot).Index == idx {
		c.bytes -= entrySize(*slot)
		*slot = nil
	}
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange deletes entries from the store and empties the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.slots)
	c.order, c.bytes = nil, 0
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}

// IsMonotonic passes on the store's answer, as raft's LogCache does.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

var _ raft.MonotonicLogStore = (*logCache)(nil)
