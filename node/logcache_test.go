package node

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// storeEntries stores entries first..first+len(sizes)-1 with data of the
// given sizes through c.
func storeEntries(t testing.TB, c *logCache, first uint64, sizes ...int) {
	t.Helper()
	logs := make([]*raft.Log, len(sizes))
	for i, size := range sizes {
		idx := first + uint64(i)
		logs[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand,
			Data: bytes.Repeat([]byte{byte(idx)}, size)}
	}
	if err := c.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

// isCached reports whether entry idx is held in the cache itself.
func (c *logCache) isCached(idx uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l := c.slots[idx%uint64(len(c.slots))]
	return l != nil && l.Index == idx
}

func TestLogCache_BoundedInBytes(t *testing.T) {
	tests := []struct {
		name       string
		sizes      []int
		cached     []uint64 // indices held in memory afterwards
		uncached   []uint64
		wantAtMost int
	}{
		{"small entries stay", []int{100, 100, 100}, []uint64{1, 2, 3}, nil, 3 * 164},
		{"a large entry is not kept", []int{100, 300 << 10, 100}, []uint64{1, 3}, []uint64{2},
			2 * 164},
		{"the oldest go when bytes run out", []int{40 << 10, 40 << 10, 40 << 10, 40 << 10},
			[]uint64{3, 4}, []uint64{1, 2}, 100 << 10},
		{"the oldest go when slots run out", []int{1, 1, 1, 1, 1, 1}, []uint64{3, 4, 5, 6},
			[]uint64{1, 2}, 4 * 65},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := raft.NewInmemStore()
			c, err := newLogCache(store, 4, 64<<10, 100<<10)
			if err != nil {
				t.Fatal(err)
			}
			storeEntries(t, c, 1, tc.sizes...)
			if got := c.cached(); got > tc.wantAtMost {
				t.Fatalf("cache holds %d bytes, want at most %d", got, tc.wantAtMost)
			}
			for _, idx := range tc.cached {
				if !c.isCached(idx) {
					t.Errorf("entry %d not cached, want it cached", idx)
				}
			}
			for _, idx := range tc.uncached {
				if c.isCached(idx) {
					t.Errorf("entry %d cached, want it left to the store", idx)
				}
			}
			// Every entry reads back whole, from memory or from the store.
			for i, size := range tc.sizes {
				var l raft.Log
				if err := c.GetLog(uint64(i+1), &l); err != nil || len(l.Data) != size {
					t.Fatalf("entry %d: got %d bytes, err %v; want %d", i+1, len(l.Data), err, size)
				}
			}
		})
	}
}

func TestLogCache_DeleteRangeEmpties(t *testing.T) {
	c, err := newLogCache(raft.NewInmemStore(), 8, 1<<10, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	storeEntries(t, c, 1, 10, 10, 10)
	if err := c.DeleteRange(2, 3); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if c.cached() != 0 || c.GetLog(2, &l) == nil {
		t.Fatalf("after DeleteRange: %d bytes cached, entry 2 still readable", c.cached())
	}
	storeEntries(t, c, 2, 10) // a new entry 2, as after a truncated tail
	if err := c.GetLog(2, &l); err != nil || !c.isCached(2) {
		t.Fatalf("new entry 2: cached %v, err %v", c.isCached(2), err)
	}
}

// TestProposer_GatherBoundedInBytes: a batch never takes a command that
// would carry it past the byte bound; that command opens the next batch,
// in order. A command larger than the bound goes alone.
func TestProposer_GatherBoundedInBytes(t *testing.T) {
	p := &proposer{maxBatch: 100, maxBytes: 1000, queue: make(chan *proposal, 16)}
	sizes := []int{400, 400, 400, 1500, 10, 10}
	for i, size := range sizes[1:] {
		p.queue <- &proposal{data: bytes.Repeat([]byte{byte(i + 1)}, size)}
	}
	var got [][]int
	first := &proposal{data: make([]byte, sizes[0])}
	for first != nil {
		var batch []int
		for _, pr := range p.gather(first) {
			batch = append(batch, len(pr.data))
		}
		got = append(got, batch)
		first, p.carry = p.carry, nil
		if first == nil && len(p.queue) > 0 {
			first = <-p.queue
		}
	}
	want := [][]int{{400, 400}, {400}, {1500}, {10, 10}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got batches of sizes %v, want %v", got, want)
	}
}
