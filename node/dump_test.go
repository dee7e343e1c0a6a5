package node

import (
	"bytes"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/schat/schat/storage"
)

// stateDump renders every record of a shard's state except the applied
// index (which differs between replicas only in timing) as text.
func stateDump(t testing.TB, n *Node, shard int) string {
	t.Helper()
	var buf bytes.Buffer
	err := n.shards[shard].fsm.View(func(tx *bolt.Tx) error {
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
	return buf.String()
}
