package storage

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// A shard snapshot is a fixed header followed by the bbolt state file
// and, from version 2 on, the file contents the state refers to:
//
//	magic "SCHATSNP" | version u32 | index u64 | term u64 | state length u64 | state
//	then per file: kind u8 | name length u8 | name | size u64 | bytes
//	and a closing kind 0.
//
// Kind 1 is a committed content named by its SHA-256 (raw bytes), kind 2
// the received bytes of an upload in progress named by its file key. The
// header lets a restore see which index the state is at before reading
// the rest. raft's snapshot store checksums the whole stream. Version 1
// snapshots (no file section) are still read.
const (
	snapMagic   = "SCHATSNP"
	snapVersion = 2
	snapHeader  = len(snapMagic) + 4 + 8 + 8 + 8
)

// Kinds of file in a snapshot's file section.
const (
	SnapEnd     byte = 0
	SnapBlob    byte = 1
	SnapPartial byte = 2
)

// maxSnapFile bounds one file's size in a snapshot, so that a corrupt
// length is refused rather than trusted.
const maxSnapFile = 1 << 40

// checkSnapFile refuses a file entry that no snapshot writer makes: an
// unknown kind, a content not named by a SHA-256, an upload with no name,
// a size out of bounds.
func checkSnapFile(f SnapshotFile) error {
	ok := f.Size >= 0 && f.Size <= maxSnapFile && len(f.Name) <= 255
	switch f.Kind {
	case SnapBlob:
		ok = ok && len(f.Name) == sha256.Size
	case SnapPartial:
		ok = ok && len(f.Name) > 0
	default:
		ok = false
	}
	if !ok {
		return fmt.Errorf("%w: file kind %d named by %d bytes, of %d bytes",
			ErrSnapshot, f.Kind, len(f.Name), f.Size)
	}
	return nil
}

// ErrSnapshot means a snapshot stream is malformed or of an unknown version.
var ErrSnapshot = errors.New("storage: bad snapshot")

// SnapshotHeader describes a shard snapshot.
type SnapshotHeader struct {
	Version     uint32
	Index, Term uint64
	StateSize   int64
}

// HasFiles reports whether a file section follows the state.
func (h SnapshotHeader) HasFiles() bool { return h.Version >= 2 }

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
	v := binary.BigEndian.Uint32(p)
	if v < 1 || v > snapVersion {
		return SnapshotHeader{}, fmt.Errorf("%w: version %d", ErrSnapshot, v)
	}
	h := SnapshotHeader{
		Version:   v,
		Index:     binary.BigEndian.Uint64(p[4:]),
		Term:      binary.BigEndian.Uint64(p[12:]),
		StateSize: int64(binary.BigEndian.Uint64(p[20:])),
	}
	if h.StateSize <= 0 {
		return SnapshotHeader{}, fmt.Errorf("%w: state size %d", ErrSnapshot, h.StateSize)
	}
	return h, nil
}

// SnapshotFile is one file of a snapshot's file section.
type SnapshotFile struct {
	Kind byte
	Name []byte // at most 255 bytes
	Size int64
}

// StreamSize is the bytes f takes in a snapshot's file section.
func (f SnapshotFile) StreamSize() int64 { return int64(2+len(f.Name)+8) + f.Size }

// SnapshotFrameSize is the bytes of a snapshot stream of a state of
// stateSize bytes before its files are added: the header, the state and
// the closing kind.
func SnapshotFrameSize(stateSize int64) int64 { return int64(snapHeader) + stateSize + 1 }

// WriteSnapshotFile appends one file of size f.Size, read from r, to a
// snapshot's file section.
func WriteSnapshotFile(w io.Writer, f SnapshotFile, r io.Reader) error {
	if err := checkSnapFile(f); err != nil {
		return err
	}
	h := append([]byte{f.Kind, byte(len(f.Name))}, f.Name...)
	h = binary.BigEndian.AppendUint64(h, uint64(f.Size))
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("write snapshot file: %w", err)
	}
	n, err := io.Copy(w, io.LimitReader(r, f.Size))
	if err == nil && n != f.Size {
		err = fmt.Errorf("%w: file %x has %d of %d bytes", ErrSnapshot, f.Name, n, f.Size)
	}
	if err != nil {
		return fmt.Errorf("write snapshot file: %w", err)
	}
	return nil
}

// EndSnapshotFiles closes a snapshot's file section.
func EndSnapshotFiles(w io.Writer) error {
	_, err := w.Write([]byte{SnapEnd})
	return err
}

// ReadSnapshotFiles reads a file section from r, calling fn with each
// file and a reader of exactly its bytes, until the closing kind.
func ReadSnapshotFiles(r io.Reader, fn func(SnapshotFile, io.Reader) error) error {
	for {
		var head [2]byte
		if _, err := io.ReadFull(r, head[:1]); err != nil {
			return fmt.Errorf("%w: file section: %v", ErrSnapshot, err)
		}
		if head[0] == SnapEnd {
			return nil
		}
		if _, err := io.ReadFull(r, head[1:]); err != nil {
			return fmt.Errorf("%w: file section: %v", ErrSnapshot, err)
		}
		rest := make([]byte, int(head[1])+8)
		if _, err := io.ReadFull(r, rest); err != nil {
			return fmt.Errorf("%w: file section: %v", ErrSnapshot, err)
		}
		f := SnapshotFile{Kind: head[0], Name: rest[:head[1]],
			Size: int64(binary.BigEndian.Uint64(rest[head[1]:]))}
		if err := checkSnapFile(f); err != nil {
			return err
		}
		lr := io.LimitReader(r, f.Size)
		if err := fn(f, lr); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, lr); err != nil {
			return fmt.Errorf("%w: file section: %v", ErrSnapshot, err)
		}
	}
}
