package node

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/fsm"
	"github.com/schat/schat/storage"
)

// stateDump renders every record of a shard's state except the applied
// index (which differs between replicas only in timing) as text.
func stateDump(t testing.TB, n *Node, shard int) string {
	t.Helper()
	return fsmDump(t, n.shards[shard].fsm)
}

// fsmDump is stateDump of one state machine.
func fsmDump(t testing.TB, f *fsm.FSM) string {
	t.Helper()
	var buf bytes.Buffer
	err := f.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if bytes.Equal(name, storage.Meta) && string(k) == "applied" {
					return nil
				}
				fmt.Fprintf(&buf, "%s %x %x\n", name, k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	dumpFiles(t, &buf, f.FilesDir())
	return buf.String()
}

// dumpFiles renders every file under dir as its path and SHA-256.
func dumpFiles(t testing.TB, buf *bytes.Buffer, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile: the next poll sees it gone
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(buf, "file %s %x\n", rel, sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
