package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// A shard snapshot is a fixed header followed by the bbolt state file:
//
//	magic "SCHATSNP" | version u32 | index u64 | term u64 | state length u64 | state
//
// The header lets a restore see which index the state is at before reading
// the rest. raft's snapshot store checksums the whole stream.
const (
	snapMagic   = "SCHATSNP"
	snapVersion = 1
	snapHeader  = len(snapMagic) + 4 + 8 + 8 + 8
)

// ErrSnapshot means a snapshot stream is malformed or of an unknown version.
var ErrSnapshot = errors.New("storage: bad snapshot")

// SnapshotHeader describes a shard snapshot.
type SnapshotHeader struct {
	Index, Term uint64
	StateSize   int64
}

// WriteSnapshot writes a snapshot of the state visible in tx to w.
func WriteSnapshot(w io.Writer, tx *bolt.Tx) error {
	index, term := Applied(tx)
	h := make([]byte, 0, snapHeader)
	h = append(h, snapMagic...)
	h = binary.BigEndian.AppendUint32(h, snapVersion)
	h = binary.BigEndian.AppendUint64(h, index)
	h = binary.BigEndian.AppendUint64(h, term)
	h = binary.BigEndian.AppendUint64(h, uint64(tx.Size()))
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := tx.WriteTo(bw); err != nil {
		return fmt.Errorf("write snapshot state: %w", err)
	}
	return bw.Flush()
}

// ReadSnapshotHeader reads and checks a snapshot's header from r, leaving r
// at the start of the state bytes.
func ReadSnapshotHeader(r io.Reader) (SnapshotHeader, error) {
	var b [snapHeader]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return SnapshotHeader{}, fmt.Errorf("%w: header: %v", ErrSnapshot, err)
	}
	if string(b[:len(snapMagic)]) != snapMagic {
		return SnapshotHeader{}, fmt.Errorf("%w: not a schat snapshot", ErrSnapshot)
	}
	p := b[len(snapMagic):]
	if v := binary.BigEndian.Uint32(p); v != snapVersion {
		return SnapshotHeader{}, fmt.Errorf("%w: version %d", ErrSnapshot, v)
	}
	h := SnapshotHeader{
		Index:     binary.BigEndian.Uint64(p[4:]),
		Term:      binary.BigEndian.Uint64(p[12:]),
		StateSize: int64(binary.BigEndian.Uint64(p[20:])),
	}
	if h.StateSize <= 0 {
		return SnapshotHeader{}, fmt.Errorf("%w: state size %d", ErrSnapshot, h.StateSize)
	}
	return h, nil
}
