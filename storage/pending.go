package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrTargetExists means a file was to be put where one already is.
var ErrTargetExists = errors.New("storage: the target file exists")

// PendingFile is a file written under a temporary name and then put in
// place whole, or removed: a reader of the final name never sees a part
// of it. The temporary name is unique in the target's directory
// (".<name>.<random>.tmp"), so a run that was killed before it ended
// leaves its own temporary file and never blocks the next one.
type PendingFile struct {
	*os.File
	path string
	done bool
}

// CreatePending creates the temporary file of path, in path's directory.
func CreatePending(path string) (*PendingFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &PendingFile{File: f, path: path}, nil
}

// Commit syncs and closes the file and gives it its final name, which
// must be free: it is hard-linked there, which fails if a file appeared
// there meanwhile, rather than renamed over it. The temporary file is
// removed in every case.
func (p *PendingFile) Commit() error {
	p.done = true
	err := p.Sync()
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(p.Name(), p.path)
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%w: %s", ErrTargetExists, p.path)
		}
	}
	os.Remove(p.Name()) // once linked, the final name keeps the bytes
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(p.path))
}

// Abort closes and removes the temporary file; after Commit it does
// nothing, so it can be deferred.
func (p *PendingFile) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.Close()
	os.Remove(p.Name())
}
