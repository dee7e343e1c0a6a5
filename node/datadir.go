package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// dirInfo is recorded in <data-dir>/schat.json when the directory is made.
type dirInfo struct {
	Format    int    `json:"format"`
	Shards    int    `json:"shards"`
	ClusterID string `json:"cluster_id"`
	NodeID    string `json:"node_id"`
	// Joined is set on a node that joined an existing cluster: it must
	// never bootstrap a cluster of its own, even before a leader has
	// reached it.
	Joined bool `json:"joined,omitempty"`
	// JoinPending lists the shards a joining node has not yet been added
	// to, and JoinVia the node-to-node addresses of the members it asks.
	// A node restarted with shards pending asks again before it serves:
	// the join it began is finished, not started over.
	JoinPending []uint32 `json:"join_pending,omitempty"`
	JoinVia     []string `json:"join_via,omitempty"`
	// Bootstrap is the configuration a new cluster's shards are started
	// with, recorded before any of them is: a node restarted before every
	// shard was bootstrapped bootstraps the rest with the same servers, and
	// never as a cluster of itself alone. Directories made before it was
	// recorded have none, and bootstrap as a cluster of this node.
	Bootstrap []dirServer `json:"bootstrap,omitempty"`
}

// dirServer is a voter of a recorded configuration.
type dirServer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

const (
	dirFormat   = 1
	dirInfoFile = "schat.json"
	secretFile  = "cluster.secret"
)

// Data directory errors.
var (
	// ErrShardCount means the directory was made with another shard count.
	ErrShardCount = errors.New("node: data directory has a different shard count")
	// ErrDirFormat means the directory was made by an incompatible version.
	ErrDirFormat = errors.New("node: unknown data directory format")
	// ErrSecret means the cluster secret is missing or does not match.
	ErrSecret = errors.New("node: cluster secret")
)

// readDataDir reads the directory's info; ok is false when the directory
// has none yet (a node that has never started).
func readDataDir(dir string) (info dirInfo, ok bool, err error) {
	path := filepath.Join(dir, dirInfoFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return dirInfo{}, false, nil
	}
	if err != nil {
		return dirInfo{}, false, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return dirInfo{}, false, fmt.Errorf("%w: %s: %v", ErrDirFormat, path, err)
	}
	if info.Format != dirFormat {
		return dirInfo{}, false, fmt.Errorf("%w: %s has format %d", ErrDirFormat, path, info.Format)
	}
	return info, true, nil
}

// checkShards refuses an explicit shard count that differs from the
// directory's.
func checkShards(dir string, info dirInfo, explicit int) error {
	if explicit != 0 && explicit != info.Shards {
		return fmt.Errorf("%w: %s was created with %d shards, not %d",
			ErrShardCount, dir, info.Shards, explicit)
	}
	return nil
}

// createDataDir writes the secret and then the info, which marks the
// directory as made.
func createDataDir(dir string, info dirInfo, secret []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, secretFile), append(secret, '\n')); err != nil {
		return err
	}
	return writeDirInfo(dir, info)
}

// writeDirInfo replaces the directory's info, durably.
func writeDirInfo(dir string, info dirInfo) error {
	info.Format = dirFormat
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, dirInfoFile), append(b, '\n'))
}

// readSecret reads the cluster secret stored in a data directory.
func readSecret(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, secretFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecret, err)
	}
	return bytes.TrimSpace(b), nil
}

// newSecret returns a fresh cluster secret: 32 random bytes, hex-encoded
// so that an operator can copy it into another node's flags.
func newSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b)), nil
}

// newClusterID returns a random cluster ID for a cluster of one.
func newClusterID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeFileAtomic writes b to path through a synced temporary file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// shardDir is where shard n keeps its raft log, snapshots and state.
func shardDir(dataDir string, n uint32) string {
	if n == 0 {
		return filepath.Join(dataDir, "meta")
	}
	return filepath.Join(dataDir, fmt.Sprintf("group-%d", n))
}
