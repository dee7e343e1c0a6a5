package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openTest(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := OpenState(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestState_CountersAndApplied(t *testing.T) {
	db := openTest(t)
	err := db.Update(func(tx *bolt.Tx) error {
		for want := uint64(10001); want < 10004; want++ {
			got, err := NextID(tx, CounterUser, 10001)
			if err != nil || got != want {
				t.Fatalf("NextID = %d, %v; want %d", got, err, want)
			}
		}
		return SetApplied(tx, 42, 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		if i, term := Applied(tx); i != 42 || term != 7 {
			t.Fatalf("Applied = %d, %d; want 42, 7", i, term)
		}
		return nil
	})
}

// TestState_BackfillsOwnedBy opens a state written before OwnedBy
// existed: its Owned entries are indexed by group, stamped 0.
func TestState_BackfillsOwnedBy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(OwnedBy); err != nil {
			return err
		}
		for _, k := range [][]byte{U64s(7, 1001), U64s(7, 1002), U64s(8, 1003)} {
			if err := tx.Bucket(Owned).Put(k, []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	if db, err = OpenState(path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(OwnedBy).ForEach(func(k, v []byte) error {
			got = append(got, fmt.Sprintf("%x=%x", k, v))
			return nil
		})
	})
	zero := fmt.Sprintf("%x", U64s(0, 0))
	want := []string{fmt.Sprintf("%x=%s", U64s(1001, 7), zero),
		fmt.Sprintf("%x=%s", U64s(1002, 7), zero), fmt.Sprintf("%x=%s", U64s(1003, 8), zero)}
	if !slices.Equal(got, want) {
		t.Fatalf("got owned_by %q, want %q", got, want)
	}
}

func TestSnapshot_RoundTripAndRejects(t *testing.T) {
	db := openTest(t)
	db.Update(func(tx *bolt.Tx) error { return SetApplied(tx, 9, 2) })
	var buf bytes.Buffer
	db.View(func(tx *bolt.Tx) error { return WriteSnapshot(&buf, tx) })
	h, err := ReadSnapshotHeader(bytes.NewReader(buf.Bytes()))
	if err != nil || h.Index != 9 || h.Term != 2 || h.StateSize != int64(buf.Len()-snapHeader) {
		t.Fatalf("header = %+v, %v; want index 9 term 2 size %d", h, err, buf.Len()-snapHeader)
	}
	bad := map[string][]byte{
		"short":   buf.Bytes()[:10],
		"magic":   append([]byte("NOTSNAPS"), buf.Bytes()[8:]...),
		"version": append(append([]byte(snapMagic), 0, 0, 0, 99), buf.Bytes()[12:]...),
	}
	for name, b := range bad {
		if _, err := ReadSnapshotHeader(bytes.NewReader(b)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: got %v, want ErrSnapshot", name, err)
		}
	}
}

// BenchmarkBolt_BatchedPut is the storage ceiling the state machine is
// measured against: 64 puts of 256 bytes per fsynced transaction.
func BenchmarkBolt_BatchedPut(b *testing.B) {
	db := openTest(b)
	val := bytes.Repeat([]byte("x"), 256)
	b.SetBytes(int64(len(val)))
	var key uint64
	for i := 0; i < b.N; i += 64 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(Messages)
			for j := 0; j < 64; j++ {
				key++
				if err := bk.Put(U64(key), val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(key)/b.Elapsed().Seconds(), "puts/s")
}
