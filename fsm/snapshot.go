package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/storage"
)

// Snapshot and Restore are the one place that knows a shard snapshot's
// layout (storage.WriteSnapshot's header and state, then the file section
// with every content the state counts and the received bytes of every
// upload in progress). Others, backups included, carry it opaquely.

// Snapshot commits what is applied and captures a read view of the state
// and the uploads in progress; raft persists it later, while Apply goes on. Until the snapshot is
// released, contents its state counts are not deleted.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.flush()
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	s := &snapshot{tx: tx, files: f.files}
	f.files.Hold()
	if err := s.openPartials(); err != nil {
		s.Release()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return s, nil
}

// snapshot holds a read transaction until it is written out. Persist ends
// the transaction itself, since not every caller releases a snapshot
// (raft's RecoverCluster does not), and an open read transaction keeps
// the state file from closing.
type snapshot struct {
	tx       *bolt.Tx
	files    *storage.FileStore
	partials []partial
	once     sync.Once
}

// partial is an upload in progress as the snapshot saw it. Its file is
// opened when the snapshot is taken, so that a later commit or abort,
// which removes the name, cannot take the bytes away; chunks applied
// later write only past received.
type partial struct {
	key      []byte
	received int64
	f        *os.File
}

func (s *snapshot) openPartials() error {
	ups, err := scanKeyed[pb.Upload](s.tx, storage.Uploads, nil)
	if err != nil {
		return err
	}
	for _, u := range ups {
		p := partial{key: u.key, received: int64(u.rec.Received)}
		if p.received > 0 {
			if p.f, err = os.Open(s.files.PartialPath(u.key)); err != nil {
				return err
			}
		}
		s.partials = append(s.partials, p)
	}
	return nil
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	err := storage.WriteSnapshot(sink, s.tx)
	if err == nil {
		err = s.writeFiles(sink)
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// writeFiles writes the file section: every counted content, then every
// upload's received bytes.
func (s *snapshot) writeFiles(w io.Writer) error {
	c := s.tx.Bucket(storage.Blobs).Cursor()
	for sum, _ := c.First(); sum != nil; sum, _ = c.Next() {
		if err := writeBlob(w, s.files.BlobPath(sum), sum); err != nil {
			return err
		}
	}
	for _, p := range s.partials {
		var r io.Reader = bytes.NewReader(nil)
		if p.f != nil {
			r = io.NewSectionReader(p.f, 0, p.received)
		}
		sf := storage.SnapshotFile{Kind: storage.SnapPartial, Name: p.key, Size: p.received}
		if err := storage.WriteSnapshotFile(w, sf, r); err != nil {
			return err
		}
	}
	return storage.EndSnapshotFiles(w)
}

// streamSize is the length of the stream Persist writes. A content whose
// file cannot be read counts nothing: Persist then fails on it anyway.
func (s *snapshot) streamSize() int64 {
	n := storage.SnapshotFrameSize(s.tx.Size())
	c := s.tx.Bucket(storage.Blobs).Cursor()
	for sum, _ := c.First(); sum != nil; sum, _ = c.Next() {
		if st, err := os.Stat(s.files.BlobPath(sum)); err == nil {
			n += storage.SnapshotFile{Name: sum, Size: st.Size()}.StreamSize()
		}
	}
	for _, p := range s.partials {
		n += storage.SnapshotFile{Name: p.key, Size: p.received}.StreamSize()
	}
	return n
}

func writeBlob(w io.Writer, path string, sum []byte) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot content: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("snapshot content: %w", err)
	}
	sf := storage.SnapshotFile{Kind: storage.SnapBlob, Name: sum, Size: st.Size()}
	return storage.WriteSnapshotFile(w, sf, fh)
}

func (s *snapshot) Release() {
	s.once.Do(func() {
		s.tx.Rollback()
		for _, p := range s.partials {
			if p.f != nil {
				p.f.Close()
			}
		}
		s.files.Release()
	})
}

// Restore replaces the state and the files with the snapshot in rc. A
// snapshot at or below the index the state already holds is skipped: on
// start raft restores its latest snapshot, and the persistent state is
// never older. The files are put in place before the state, so a state
// never names files a crash kept from arriving; a crash in between leaves
// the old state, whose index makes the next start restore again.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.flush()
	h, err := storage.ReadSnapshotHeader(rc)
	if err != nil {
		return err
	}
	if h.Index <= f.applied.Load() {
		f.log.Info("snapshot already applied", "index", h.Index,
			"applied", f.applied.Load())
		_, err := io.Copy(io.Discard, rc)
		return err
	}
	tmp := f.cfg.Path + ".restore"
	if err := writeFileSync(tmp, io.LimitReader(rc, h.StateSize), h.StateSize); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := f.restoreFiles(rc, h); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := f.swap(tmp); err != nil {
		return err
	}
	f.log.Info("restored snapshot", "index", h.Index, "term", h.Term)
	f.committed.Store(h.Index)
	f.setApplied(h.Index)
	return nil
}

// restoreFiles writes the snapshot's file section into a fresh directory
// and puts it in place of the files directory.
func (f *FSM) restoreFiles(r io.Reader, h storage.SnapshotHeader) error {
	staging := f.cfg.FilesDir + ".restore"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("restore files: %w", err)
	}
	st, err := storage.NewFileStore(staging)
	if err != nil {
		return err
	}
	if h.HasFiles() {
		if err := storage.ReadSnapshotFiles(r, func(sf storage.SnapshotFile, r io.Reader) error {
			return restoreFile(st, sf, r)
		}); err != nil {
			os.RemoveAll(staging)
			return fmt.Errorf("restore files: %w", err)
		}
	}
	return f.swapFiles(staging)
}

// restoreFile writes one file of a snapshot into st, checking a content
// against its SHA-256.
func restoreFile(st *storage.FileStore, sf storage.SnapshotFile, r io.Reader) error {
	path := st.PartialPath(sf.Name)
	h := sha256.New()
	if sf.Kind == storage.SnapBlob {
		path = st.BlobPath(sf.Name)
		r = io.TeeReader(r, h)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
	}
	if err := writeFileSync(path, r, sf.Size); err != nil {
		return err
	}
	if sf.Kind == storage.SnapBlob && !bytes.Equal(h.Sum(nil), sf.Name) {
		return fmt.Errorf("%w: content %x does not match its SHA-256", storage.ErrSnapshot, sf.Name)
	}
	return storage.SyncDir(filepath.Dir(path))
}

// swapFiles replaces the files directory with staging. Removals a held
// snapshot delayed are forgotten: the old directory goes whole.
func (f *FSM) swapFiles(staging string) error {
	old := f.cfg.FilesDir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("restore files: %w", err)
	}
	if err := os.Rename(f.cfg.FilesDir, old); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("restore files: %w", err)
	}
	if err := os.Rename(staging, f.cfg.FilesDir); err != nil {
		return fmt.Errorf("restore files: %w", err)
	}
	f.files.Forget()
	if err := storage.SyncDir(filepath.Dir(f.cfg.FilesDir)); err != nil {
		return fmt.Errorf("restore files: %w", err)
	}
	return os.RemoveAll(old)
}

// swap closes the state file, renames tmp over it and reopens it.
func (f *FSM) swap(tmp string) error {
	f.txMu.Lock()
	defer f.txMu.Unlock()
	f.commitLocked()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("restore: close state: %w", err)
	}
	if err := os.Rename(tmp, f.cfg.Path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := storage.SyncDir(filepath.Dir(f.cfg.Path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := storage.OpenState(f.cfg.Path)
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	f.db = db
	return nil
}

func writeFileSync(path string, r io.Reader, size int64) error {
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	n, err := io.Copy(fh, r)
	if err == nil && n != size {
		err = fmt.Errorf("%w: %s is %d bytes, header says %d",
			storage.ErrSnapshot, filepath.Base(path), n, size)
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: write: %w", err)
	}
	return nil
}
