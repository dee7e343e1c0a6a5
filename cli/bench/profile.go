package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// The servers' profiles, taken while a scenario measures when ProfileDir
// is set: a CPU profile of each node over the measurement, or a heap
// profile after connections has opened its connections. They are read
// from the nodes' /debug/pprof, which wants the cluster secret.

// profileCPU starts fetching a CPU profile of d from every server and
// returns a function that waits until they are saved.
func (r *runner) profileCPU(ctx context.Context, scenario string, d time.Duration) func() {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	return r.profile(ctx, scenario+"-cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
}

// profileHeap saves a heap profile of every server.
func (r *runner) profileHeap(ctx context.Context, scenario string) {
	r.profile(ctx, scenario+"-heap", "/debug/pprof/heap")()
}

// profile fetches path from every server into ProfileDir/name-nodeN.pprof
// in the background; the function returned waits for the fetches. A
// profile that cannot be had is logged, not fatal: it is a by-product.
func (r *runner) profile(ctx context.Context, name, path string) func() {
	if r.cfg.ProfileDir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for i, addr := range r.cfg.HTTPAddrs {
		file := filepath.Join(r.cfg.ProfileDir, fmt.Sprintf("%s-node%d.pprof", name, i+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.fetchProfile(ctx, "http://"+addr+path, file); err != nil {
				r.log.Warn("no profile", "path", path, "err", err)
			}
		}()
	}
	return wg.Wait
}

// fetchProfile saves what url serves to file.
func (r *runner) fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileSelf profiles this process's CPU, the load generator's (and the
// ceiling's, which runs here), into ProfileDir/scenario-bench-cpu.pprof
// until the function returned is called.
func (r *runner) profileSelf(scenario string) (func(), error) {
	if r.cfg.ProfileDir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(r.cfg.ProfileDir, scenario+"-bench-cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
