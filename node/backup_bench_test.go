package node

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// The backup benchmark's deployment; the defaults are the sizes to
// measure. -backup.files-mb takes a list: one sub-benchmark per size,
// for comparing memory as the snapshot grows.
var (
	benchBackupMessages = flag.Int("backup.messages", 200000,
		"messages in BenchmarkBackup's deployment")
	benchBackupFilesMB = flag.String("backup.files-mb", "100,200",
		"MiB of files in BenchmarkBackup's deployment, one sub-benchmark per value")
)

// backupLoad is the size of a deployment to back up.
type backupLoad struct {
	messages  int
	fileBytes int64
}

// benchFileSize is the size of each file of the deployment: random bytes,
// so that none is the same content as another.
const benchFileSize = 4 << 20

// fillDeployment fills n through its client and HTTP ports: messages of
// 200 bytes from 8 users in 8 groups, 32 sends in flight each, then
// files uploaded and sent as file messages until load.fileBytes.
func fillDeployment(t testing.TB, n *Node, load backupLoad) {
	t.Helper()
	ctx := context.Background()
	const clients, inflight = 8, 32
	conns := make([]*transport.Client, clients)
	gids := make([]uint64, clients)
	var token string
	for i := range conns {
		c, l := user(t, n.ClientAddr(), false, fmt.Sprintf("filler%d", i))
		conns[i], token = c, l.Token
		gids[i] = must(c.CreateGroup(ctx, &pb.CreateGroupRequest{Name: "g"}))(t).GroupId
		go drain(c)
	}
	var left atomic.Int64
	left.Store(int64(load.messages))
	text := strings.Repeat("m", 200)
	var wg sync.WaitGroup
	for i := range clients * inflight {
		wg.Add(1)
		go func(c *transport.Client, gid uint64) {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := c.Send(ctx, gid, text, ""); err != nil {
					t.Error(err)
					return
				}
			}
		}(conns[i%clients], gids[i%clients])
	}
	wg.Wait()

	fc := files(t, n, token)
	rng := rand.NewChaCha8([32]byte{1})
	for off := int64(0); off < load.fileBytes; off += benchFileSize {
		size := min(benchFileSize, load.fileBytes-off)
		info := must(fc.Upload(ctx, transport.ChatFile(gids[clients-1]), "f.bin",
			io.LimitReader(rng, size), size))(t)
		must(conns[clients-1].SendFile(ctx, gids[clients-1], pb.MessageType_MESSAGE_TYPE_FILE,
			info.FileId, "", ""))(t)
	}
}

// backupRun is one backup, plain copy and restore of a deployment.
type backupRun struct {
	size                   int64 // of the backup file
	backup, copy, restore  time.Duration
	backupHeap, restoreMem uint64 // peak heap growth while each ran
}

// backupRestore takes a backup of n through /cluster/backup into a file
// in dir, as `schat backup --addr` does, copies the file (the same bytes,
// read and written and synced once), and restores it into a fresh data
// directory, as `schat restore` does.
func backupRestore(t testing.TB, n *Node, dir string) backupRun {
	t.Helper()
	var r backupRun
	file := filepath.Join(dir, "bench.backup")
	r.backup, r.backupHeap = measure(func() { r.size = fetchBackupFile(t, n, file) })
	start := time.Now()
	copyFile(t, file, filepath.Join(dir, "copy.backup"))
	r.copy = time.Since(start)
	restored := filepath.Join(dir, "restored")
	r.restore, r.restoreMem = measure(func() {
		if _, err := Restore(RestoreConfig{From: file, DataDir: restored}); err != nil {
			t.Fatal(err)
		}
	})
	return r
}

// fetchBackupFile streams n's /cluster/backup into path, synced, and
// returns its size.
func fetchBackupFile(t testing.TB, n *Node, path string) int64 {
	t.Helper()
	// No deadline: a large deployment's backup takes what it takes.
	req, err := http.NewRequest(http.MethodGet, "http://"+n.HTTPAddr()+"/cluster/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+string(n.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup: %s", resp.Status)
	}
	return writeSynced(t, path, resp.Body)
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeSynced(t, to, f)
}

// writeSynced writes r to a new file at path through a 1 MiB buffer,
// syncs it and returns its size.
func writeSynced(t testing.TB, path string, r io.Reader) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	size, err := io.Copy(w, r)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		t.Fatal(err)
	}
	return size
}

// measure runs fn and returns how long it took and how far the heap grew
// above what it held before, at its highest, sampled every millisecond.
func measure(fn func()) (time.Duration, uint64) {
	runtime.GC()
	base := heapInUse()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	fn()
	took := time.Since(start)
	close(stop)
	<-sampled
	if h := heapInUse(); h > peak.Load() {
		peak.Store(h)
	}
	if peak.Load() < base {
		return took, 0
	}
	return took, peak.Load() - base
}

// heapInUse is the bytes of live and not yet swept heap objects, read
// without stopping the world.
func heapInUse() uint64 {
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

func benchLoads(b *testing.B) []backupLoad {
	var out []backupLoad
	for _, f := range strings.Split(*benchBackupFilesMB, ",") {
		mb, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || mb < 0 {
			b.Fatalf("-backup.files-mb: %q is not a size in MiB", f)
		}
		out = append(out, backupLoad{messages: *benchBackupMessages, fileBytes: int64(mb) << 20})
	}
	return out
}

// BenchmarkBackup measures, for a deployment of -backup.messages messages
// and -backup.files-mb of files, the throughput of a backup through a
// node's HTTP port into a file, of a plain copy of that file, and of a
// restore from it, and how far the heap grows during the backup and the
// restore (it must not grow with the deployment).
func BenchmarkBackup(b *testing.B) {
	for _, load := range benchLoads(b) {
		name := fmt.Sprintf("messages=%d/files=%dMiB", load.messages, load.fileBytes>>20)
		b.Run(name, func(b *testing.B) {
			n := startNode(b, testConfig(b))
			fillDeployment(b, n, load)
			b.ResetTimer()
			var sum backupRun
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				b.StartTimer()
				r := backupRestore(b, n, dir)
				sum.size = r.size
				sum.backup += r.backup
				sum.copy += r.copy
				sum.restore += r.restore
				sum.backupHeap = max(sum.backupHeap, r.backupHeap)
				sum.restoreMem = max(sum.restoreMem, r.restoreMem)
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			mbps := func(d time.Duration) float64 {
				return float64(sum.size) * float64(b.N) / (1 << 20) / d.Seconds()
			}
			b.ReportMetric(float64(sum.size)/(1<<20), "file-MiB")
			b.ReportMetric(mbps(sum.backup), "backup-MiB/s")
			b.ReportMetric(mbps(sum.copy), "copy-MiB/s")
			b.ReportMetric(mbps(sum.restore), "restore-MiB/s")
			b.ReportMetric(float64(sum.backupHeap)/(1<<20), "backup-peak-heap-MiB")
			b.ReportMetric(float64(sum.restoreMem)/(1<<20), "restore-peak-heap-MiB")
		})
	}
}

// TestBackupBench_SmallRun runs BenchmarkBackup's code at a small size: the
// deployment is filled, backed up, copied and restored, and the restored
// deployment holds every message and file.
func TestBackupBench_SmallRun(t *testing.T) {
	n := startNode(t, testConfig(t))
	load := backupLoad{messages: 600, fileBytes: benchFileSize + 1<<20}
	fillDeployment(t, n, load)
	dir := t.TempDir()
	r := backupRestore(t, n, dir)
	if r.size < load.fileBytes {
		t.Fatalf("backup of %d bytes holds less than the %d bytes of files", r.size, load.fileBytes)
	}
	m := verifyFile(t, filepath.Join(dir, "copy.backup"))
	if m.Counts.Files != 2 || m.Counts.Messages < uint64(load.messages) {
		t.Fatalf("the backup counts %+v, want 2 files and at least %d messages", m.Counts,
			load.messages)
	}
	restored := openRestoredShard(t, filepath.Join(dir, "restored"), 1)
	if got, want := logicalDump(t, restored), logicalDump(t, n.shards[1].fsm); got != want {
		t.Fatal("the restored group shard differs from the source")
	}
}
