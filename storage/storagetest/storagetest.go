// Package storagetest makes storage files for tests of the code that
// reads them.
package storagetest

import (
	"bytes"
	"io"
	"testing"

	"github.com/schat/schat/storage"
)

// OpaqueBackup returns a whole, well-formed backup file of a meta shard
// and one group shard whose parts are partSize bytes that are not shard
// snapshots: the container checks pass, and only restoring a part finds
// out. The manifest counts m's Counts.
func OpaqueBackup(t testing.TB, partSize int, m storage.Manifest) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw, err := storage.NewBackupWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for shard := range uint32(2) {
		part := bytes.Repeat([]byte{byte('a' + shard)}, partSize)
		if _, err := bw.WritePart(shard, 10+uint64(shard), 2, func(w io.Writer) error {
			_, err := w.Write(part)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	m.Shards = 1
	if err := bw.Finish(&m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
