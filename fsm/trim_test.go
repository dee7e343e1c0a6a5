package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// trimWork is what TrimWork finds for c at the harness time.
func (h *harness) trimWork(t testing.TB, c *pb.TrimCmd) []uint64 {
	t.Helper()
	var ids []uint64
	h.view(t, func(tx *bolt.Tx) (err error) {
		ids, err = TrimWork(tx, h.now, c, 64)
		return err
	})
	return ids
}

// trimAll applies trims with c's limits, on the groups TrimWork names, as
// a shard leader would until it finds no more work, and returns the
// results.
func (h *harness) trimAll(t testing.TB, c *pb.TrimCmd) []*Result {
	t.Helper()
	var out []*Result
	for ids := h.trimWork(t, c); len(ids) > 0; ids = h.trimWork(t, c) {
		if len(out) == 10_000 {
			t.Fatalf("trim still finds work after %d commands", len(out))
		}
		next := proto.CloneOf(c)
		next.GroupIds = ids
		out = append(out, h.must(t, cmd(next)))
	}
	return out
}

// kept lists the seqs of gid's messages still stored.
func (h *harness) kept(t testing.TB, gid uint64) []uint64 {
	t.Helper()
	var out []uint64
	h.view(t, func(tx *bolt.Tx) error {
		for _, k := range keysWithPrefix(tx.Bucket(storage.Messages), storage.U64(gid)) {
			out = append(out, storage.ReadU64(k, 8))
		}
		return nil
	})
	return out
}

// agedWorld is the world with messages 3..12 in g1, message n sent at
// startMs + 1000*n (g1's notes 1 and 2 at startMs), and bob's cursor at 4.
func agedWorld(t testing.TB) *harness {
	h := newWorld(t)
	for i := uint64(3); i <= 12; i++ {
		h.now = startMs + int64(1000*i)
		h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: alice, Text: fmt.Sprint(i),
			ClientMsgId: fmt.Sprint("c", i)}))
	}
	h.must(t, cmd(&pb.MarkReadCmd{GroupId: g1, UserId: bob, Seq: 4}))
	h.now = startMs + 20_000
	h.take()
	return h
}

func TestFSM_Trim_Retention(t *testing.T) {
	tests := []struct {
		name     string
		maxAgeMs int64
		maxMsgs  uint64
		kept     []uint64
	}{
		{"keep everything", 0, 0, span(1, 12)},
		{"newest five", 0, 5, span(8, 12)},
		{"more than there are", 0, 100, span(1, 12)},
		{"younger than 12.5s", 12_500, 0, span(8, 12)},
		{"younger than 1s", 1000, 0, nil},
		{"both, count binds", 15_000, 3, span(10, 12)},
		{"both, age binds", 10_500, 8, span(10, 12)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := agedWorld(t)
			c := &pb.TrimCmd{MaxAgeMs: tc.maxAgeMs, MaxMessages: tc.maxMsgs}

			h.trimAll(t, c)

			if got := h.kept(t, g1); !slices.Equal(got, tc.kept) {
				t.Fatalf("got seqs %v kept, want %v", got, tc.kept)
			}
			g := h.group(t, g1)
			first := uint64(13)
			if len(tc.kept) > 0 {
				first = tc.kept[0]
			}
			wantUint(t, g.TrimmedSeq, first-1)
			wantUint(t, g.LastSeq, 12)
			wantEvents(t, h.take())
			// The dedup keys went with their messages.
			var dedup int
			h.view(t, func(tx *bolt.Tx) error {
				dedup = len(keysWithPrefix(tx.Bucket(storage.Dedup), storage.U64(g1)))
				return nil
			})
			want := 0
			for _, seq := range tc.kept {
				if seq >= 3 {
					want++
				}
			}
			if dedup != want {
				t.Fatalf("got %d dedup keys, want %d", dedup, want)
			}
		})
	}
}

// TestFSM_Trim_Reads shows history, sync and unread counts once the
// oldest messages are gone.
func TestFSM_Trim_Reads(t *testing.T) {
	h := agedWorld(t)
	h.trimAll(t, &pb.TrimCmd{MaxMessages: 5}) // keeps 8..12; bob has read to 4
	page := func(read func(tx *bolt.Tx) (*pb.MessagePage, error)) *pb.MessagePage {
		var p *pb.MessagePage
		h.view(t, func(tx *bolt.Tx) (err error) { p, err = read(tx); return err })
		return p
	}
	tests := []struct {
		name string
		read func(tx *bolt.Tx) (*pb.MessagePage, error)
		want []uint64
		more bool
	}{
		{"history from the newest", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return History(tx, g1, 0, 3)
		}, span(10, 12), true},
		{"history to the first kept", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return History(tx, g1, 10, 10)
		}, span(8, 9), false},
		{"history before the first kept", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return History(tx, g1, 6, 10)
		}, nil, false},
		{"sync from a trimmed cursor", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return Sync(tx, g1, 4, 2)
		}, span(8, 9), true},
		{"sync from the start", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return Sync(tx, g1, 0, 10)
		}, span(8, 12), false},
		{"sync from a kept seq", func(tx *bolt.Tx) (*pb.MessagePage, error) {
			return Sync(tx, g1, 10, 10)
		}, span(11, 12), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := page(tc.read)
			if got := seqs(p); !slices.Equal(got, tc.want) || p.More != tc.more {
				t.Fatalf("got %v more %t, want %v more %t", got, p.More, tc.want, tc.more)
			}
			if p.FirstSeq != 8 || p.LastSeq != 12 {
				t.Fatalf("got first %d last %d, want 8 and 12", p.FirstSeq, p.LastSeq)
			}
		})
	}

	// Bob's cursor is below the trim point: only the kept messages count.
	if s := h.mine(t, bob)[0]; s.ReadSeq != 4 || s.Unread != 5 {
		t.Fatalf("got bob's summary %v, want read 4 with 5 unread", s)
	}
	res := h.must(t, cmd(&pb.MarkReadCmd{GroupId: g1, UserId: bob, Seq: 9}))
	if res.ReadSeq != 9 || res.Unread != 3 {
		t.Fatalf("got read %d unread %d, want 9 and 3", res.ReadSeq, res.Unread)
	}
	// Sequence numbers go on from the last, and a retry of a send whose
	// message is gone lands again.
	again := h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: alice, Text: "3",
		ClientMsgId: "c3"}))
	if again.Existing || again.Message.Seq != 13 {
		t.Fatalf("got seq %d existing %t, want a new message 13", again.Message.Seq, again.Existing)
	}
}

// TestFSM_Trim_Batches shows that a trim removes at most its budget, that
// later trims go on from there, and that nothing is removed twice.
func TestFSM_Trim_Batches(t *testing.T) {
	h := agedWorld(t)
	c := &pb.TrimCmd{GroupIds: []uint64{g1}, MaxMessages: 2, MaxRecords: 5}
	var got []uint64
	for range 6 {
		got = append(got, h.must(t, cmd(proto.CloneOf(c))).Count)
	}
	// Notes 1 and 2 have no dedup key (1 record each), messages 3.. have
	// one (2 records each): 1+1+2, 2+2, 2+2, 2+2, 2, then nothing.
	if want := []uint64{4, 4, 4, 4, 2, 0}; !slices.Equal(got, want) {
		t.Fatalf("got %v records per trim, want %v", got, want)
	}
	if kept := h.kept(t, g1); !slices.Equal(kept, span(11, 12)) {
		t.Fatalf("got %v kept, want 11 and 12", kept)
	}
	// A budget below one message's records still removes one message.
	h2 := agedWorld(t)
	tiny := &pb.TrimCmd{GroupIds: []uint64{g1}, MaxMessages: 2, MaxRecords: 1}
	h2.must(t, cmd(&pb.TrimCmd{GroupIds: []uint64{g1}, MaxMessages: 2, MaxRecords: 2}))
	if res := h2.must(t, cmd(tiny)); res.Count != 2 {
		t.Fatalf("got %d records with a budget of 1, want one message's 2", res.Count)
	}
}

func TestFSM_Trim_ReleasesFiles(t *testing.T) {
	h := newWorld(t)
	data := []byte("old picture")
	id := testFileID(g1, 1)
	h.upload(t, id, bob, data, pb.FileKind_FILE_KIND_IMAGE)
	img := pb.MessageType_MESSAGE_TYPE_IMAGE
	h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Type: img, FileId: id}))
	h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Type: img, FileId: id}))
	for i := range 3 {
		h.say(t, g1, alice, fmt.Sprint(i))
	} // 1, 2 notes; 3, 4 the picture; 5..7 text

	h.trimAll(t, &pb.TrimCmd{MaxMessages: 4}) // drops 1..3: one reference left
	if !h.blobExists(data) || h.fileRefs(t, id) != 1 {
		t.Fatalf("got %d references and content %t, want 1 and kept",
			h.fileRefs(t, id), h.blobExists(data))
	}
	h.trimAll(t, &pb.TrimCmd{MaxMessages: 3}) // drops 4: no reference left
	if h.blobExists(data) || h.fileRefs(t, id) != 0 {
		t.Fatalf("got %d references and content %t, want the file gone",
			h.fileRefs(t, id), h.blobExists(data))
	}
}

// fileRefs is the reference count of file id, 0 when it is gone.
func (h *harness) fileRefs(t testing.TB, id string) uint32 {
	t.Helper()
	var n uint32
	h.view(t, func(tx *bolt.Tx) error {
		f, err := GetFile(tx, id)
		n = f.GetRefs()
		return err
	})
	return n
}

func TestTrimWork(t *testing.T) {
	h := agedWorld(t)
	h.say(t, g2, alice, "young") // g2: note 1 at startMs, this one now
	h.must(t, cmd(&pb.CreateGroupCmd{GroupId: 1003, OwnerId: alice, Name: "three"}))
	h.must(t, cmd(&pb.DissolveCmd{GroupId: 1003, ActorId: alice}))
	tests := []struct {
		name string
		c    *pb.TrimCmd
		want []uint64
	}{
		{"no limits: dissolved only", &pb.TrimCmd{}, []uint64{1003}},
		{"count", &pb.TrimCmd{MaxMessages: 11}, []uint64{1003, g1}},
		{"count of both", &pb.TrimCmd{MaxMessages: 1}, []uint64{1003, g1, g2}},
		{"age", &pb.TrimCmd{MaxAgeMs: 19_999}, []uint64{1003, g1, g2}},
		{"age of none", &pb.TrimCmd{MaxAgeMs: 20_000}, []uint64{1003}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.trimWork(t, tc.c); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestFSM_Dissolve_BigGroupInBatches dissolves a group with thousands of
// messages: the dissolve itself touches none of them, trims remove them
// in bounded batches, and in the end nothing of the group remains.
func TestFSM_Dissolve_BigGroupInBatches(t *testing.T) {
	const messages, batch = 3000, 500
	h := newWorld(t)
	data := []byte("a file in a big group")
	fid := testFileID(g1, 9)
	h.upload(t, fid, bob, data, pb.FileKind_FILE_KIND_GENERIC)
	h.must(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Type: pb.MessageType_MESSAGE_TYPE_FILE,
		FileId: fid}))
	var sends []*raft.Log
	for i := range messages {
		sends = append(sends, h.log(t, cmd(&pb.SendCmd{GroupId: g1, SenderId: bob, Text: "x",
			ClientMsgId: fmt.Sprint("m", i)})))
	}
	for _, r := range h.f.ApplyBatch(sends) {
		wantCode(t, r.(*Result), pb.Code_OK)
	}
	keep := h.dumpGroup(t, g2)
	before := h.dump(t, false)

	h.must(t, cmd(&pb.DissolveCmd{GroupId: g1, ActorId: alice}))

	// The dissolve changed the group, its members, applications and
	// listing, and wrote two notices and a counter: not its history.
	if n := changedLines(before, h.dump(t, false)); n > 20 {
		t.Fatalf("the dissolve changed %d records, want a few", n)
	}
	if left := len(h.kept(t, g1)); left != messages+3 {
		t.Fatalf("got %d messages left after the dissolve, want %d for trim", left, messages+3)
	}

	prev := h.dump(t, false)
	results := h.trimAll(t, &pb.TrimCmd{MaxRecords: batch})
	if len(results) < 2*messages/batch {
		t.Fatalf("got the history removed in %d trims, want at least %d",
			len(results), 2*messages/batch)
	}
	for i, res := range results {
		if res.Count > batch {
			t.Fatalf("trim %d removed %d records, want at most %d", i, res.Count, batch)
		}
	}
	if n := changedLines(prev, h.dump(t, false)); n < 2*messages {
		t.Fatalf("got %d records removed by the trims, want the history's", n)
	}
	if left := h.dumpGroup(t, g1); len(left) != 0 {
		t.Fatalf("got %d records left of the group, first %q", len(left), left[0])
	}
	if h.blobExists(data) {
		t.Fatalf("got the group's file content kept, want it gone")
	}
	sameState(t, h.dumpGroup(t, g2), keep)
	for _, l := range h.dump(t, false) {
		if strings.HasPrefix(l, "blobs ") || strings.HasPrefix(l, "files ") {
			t.Fatalf("got %q left, want no file", l)
		}
	}
}

// changedLines counts the lines in one dump and not the other.
func changedLines(a, b []string) int {
	n := 0
	in := func(l string, d []string) bool { _, ok := slices.BinarySearch(d, l); return ok }
	sa, sb := slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	for _, l := range sa {
		if !in(l, sb) {
			n++
		}
	}
	for _, l := range sb {
		if !in(l, sa) {
			n++
		}
	}
	return n
}
