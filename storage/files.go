package storage

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// FileStore is a shard's directory of file contents:
//
//	<dir>/<first SHA-256 byte, hex>/<SHA-256 hex>   committed contents
//	<dir>/partial/<file key, hex>                   uploads in progress
//
// The state machine writes it from its apply goroutine only; snapshots
// read it concurrently. A content is removed only after the bbolt
// transaction that stopped counting it has committed, and while a
// snapshot holds the store its removal waits for the snapshot's release,
// so that a snapshot being written finds every content its state names.
type FileStore struct {
	dir string

	mu      sync.Mutex
	holds   int
	pending map[string]bool // blob hex sums whose removal waits for holds
}

// NewFileStore returns the store rooted at dir, creating it if needed.
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "partial"), 0o700); err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	return &FileStore{dir: dir, pending: make(map[string]bool)}, nil
}

// Dir is the store's root.
func (s *FileStore) Dir() string { return s.dir }

// BlobPath is where the content with SHA-256 sum lives.
func (s *FileStore) BlobPath(sum []byte) string {
	h := hex.EncodeToString(sum)
	return filepath.Join(s.dir, h[:2], h)
}

// PartialPath is where the bytes of the upload with key key accumulate.
func (s *FileStore) PartialPath(key []byte) string {
	return filepath.Join(s.dir, "partial", hex.EncodeToString(key))
}

// ChunkWriter writes the chunks of one applied batch into their uploads'
// partial files, keeping each file open for the batch, and makes them
// durable at once in Sync, before the batch's transaction commits. Writing
// the same bytes at the same offset again changes nothing, so an entry
// applied again after a crash is harmless. It is used from the apply
// goroutine only.
type ChunkWriter struct {
	s    *FileStore
	open map[string]*os.File
}

// NewChunkWriter returns a writer for one batch.
func (s *FileStore) NewChunkWriter() *ChunkWriter {
	return &ChunkWriter{s: s, open: make(map[string]*os.File)}
}

// Write writes data at off of the partial file of the upload with key key.
func (w *ChunkWriter) Write(key []byte, off int64, data []byte) error {
	f := w.open[string(key)]
	if f == nil {
		var err error
		f, err = os.OpenFile(w.s.PartialPath(key), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("write chunk: %w", err)
		}
		w.open[string(key)] = f
	}
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	return nil
}

// Sync fsyncs and closes every partial file written since the last Sync.
func (w *ChunkWriter) Sync() error {
	var first error
	for k, f := range w.open {
		err := f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil && first == nil {
			first = fmt.Errorf("sync chunks: %w", err)
		}
		delete(w.open, k)
	}
	return first
}

// Close closes the files still open without syncing them: the batch did
// not commit.
func (w *ChunkWriter) Close() {
	for k, f := range w.open {
		f.Close()
		delete(w.open, k)
	}
}

// LinkBlob makes the upload's partial file the content with SHA-256 sum,
// durably, leaving the partial in place; the caller removes it once the
// state recording the content has committed. An existing content with
// that sum is kept: it has the same bytes.
func (s *FileStore) LinkBlob(key, sum []byte) error {
	path := s.BlobPath(sum)
	s.mu.Lock()
	delete(s.pending, filepath.Base(path))
	s.mu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	if err := os.Link(s.PartialPath(key), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("link blob: %w", err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	return SyncDir(s.dir)
}

// RemovePartial deletes an upload's partial file, if any.
func (s *FileStore) RemovePartial(key []byte) error {
	err := os.Remove(s.PartialPath(key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveBlob deletes the content with SHA-256 sum, or, while a snapshot
// holds the store, marks it for deletion at the last release.
func (s *FileStore) RemoveBlob(sum []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds > 0 {
		s.pending[hex.EncodeToString(sum)] = true
		return nil
	}
	return removeFile(s.BlobPath(sum))
}

// Hold keeps every content from removal until the matching Release.
func (s *FileStore) Hold() {
	s.mu.Lock()
	s.holds++
	s.mu.Unlock()
}

// Release ends a Hold; the last one carries out the removals it delayed.
func (s *FileStore) Release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holds--
	if s.holds > 0 {
		return nil
	}
	var errs []error
	for h := range s.pending {
		errs = append(errs, removeFile(filepath.Join(s.dir, h[:2], h)))
	}
	clear(s.pending)
	return errors.Join(errs...)
}

// Forget drops the removals waiting for holds; Restore calls it when it
// has replaced the whole directory.
func (s *FileStore) Forget() {
	s.mu.Lock()
	clear(s.pending)
	s.mu.Unlock()
}

// Collect deletes every content for which keepBlob is false and every
// partial file for which keepPartial is false. It runs at open, before
// the log is replayed, to clear what a crash left between a commit and
// the deletions that follow it. Contents a replayed entry needs again are
// made again from their partial files, which the state still names.
func (s *FileStore) Collect(keepBlob func(sum []byte) bool,
	keepPartial func(key []byte) bool) error {
	return filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, herr := hex.DecodeString(d.Name())
		if herr != nil {
			return nil // not ours; leave it
		}
		partial := filepath.Base(filepath.Dir(path)) == "partial"
		if partial && !keepPartial(raw) || !partial && !keepBlob(raw) {
			return removeFile(path)
		}
		return nil
	})
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SyncDir fsyncs a directory, making renames and links in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
