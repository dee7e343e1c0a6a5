package node

import (
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
}

const (
	dirFormat   = 1
	dirInfoFile = "schat.json"
)

// Data directory errors.
var (
	// ErrShardCount means the directory was made with another shard count.
	ErrShardCount = errors.New("node: data directory has a different shard count")
	// ErrDirFormat means the directory was made by an incompatible version.
	ErrDirFormat = errors.New("node: unknown data directory format")
)

// openDataDir reads the directory's info, creating the directory and the
// info on first start. explicitShards, when non-zero, must match an
// existing directory's count.
func openDataDir(dir, nodeID string, shards, explicitShards int) (dirInfo, bool, error) {
	path := filepath.Join(dir, dirInfoFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		info, err := createDataDir(dir, nodeID, shards)
		return info, true, err
	}
	if err != nil {
		return dirInfo{}, false, err
	}
	var info dirInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return dirInfo{}, false, fmt.Errorf("%w: %s: %v", ErrDirFormat, path, err)
	}
	if info.Format != dirFormat {
		return dirInfo{}, false, fmt.Errorf("%w: %s has format %d", ErrDirFormat, path, info.Format)
	}
	if explicitShards != 0 && explicitShards != info.Shards {
		return dirInfo{}, false, fmt.Errorf("%w: %s was created with %d shards, not %d",
			ErrShardCount, dir, info.Shards, explicitShards)
	}
	return info, false, nil
}

func createDataDir(dir, nodeID string, shards int) (dirInfo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return dirInfo{}, err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return dirInfo{}, err
	}
	info := dirInfo{Format: dirFormat, Shards: shards, ClusterID: hex.EncodeToString(id),
		NodeID: nodeID}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return dirInfo{}, err
	}
	return info, writeFileAtomic(filepath.Join(dir, dirInfoFile), append(b, '\n'))
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
