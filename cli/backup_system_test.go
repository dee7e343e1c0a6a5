package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runSchat runs the schat binary with args and returns its standard
// output and exit error.
func runSchat(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return runSchatEnv(t, nil, args...)
}

// runSchatEnv is runSchat with env added to the environment. The test's
// own SCHAT_ variables are left out, so that only env and args count.
func runSchatEnv(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, schatBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCHAT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return stdout.String(), err
}

// TestBackup_MoveToNewDirectory moves a deployment the way an operator
// does: `schat backup` from a running `schat serve`, `schat snapshot
// inspect`, `schat restore` into a new directory, start it, log in and
// read the history. A damaged copy is reported as not whole, and the
// stopped node's directory backs up offline.
func TestBackup_MoveToNewDirectory(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, serverOptions{dataDir: dataDir})
	r := script(t, srv.clientAddr, `
		reg ann 123 ann 1 here
		login ann 123
		create moving 123
	`)
	gid := r.results[2].num("grp_id")
	script(t, srv.clientAddr,
		fmt.Sprintf("login ann 123\nchat 0 %d packed\nchat 0 %[1]d shipped\n", gid))

	// The operator's credential is the secret every node keeps.
	secretFile := filepath.Join(dataDir, "cluster.secret")
	file := filepath.Join(t.TempDir(), "move.backup")
	out, err := runSchat(t, "backup", "--addr", srv.httpAddr, "--cluster-secret-file",
		secretFile, "--out", file)
	if err != nil || !strings.Contains(out, "backup written") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	wantWhole(t, file)
	wantDamagedRefused(t, file)

	restored := filepath.Join(t.TempDir(), "restored")
	raftAddr := freeAddr(t)
	out, err = runSchat(t, "restore", "--from", file, "--data-dir", restored,
		"--node-id", "moved1", "--raft-addr", raftAddr)
	if err != nil || !strings.Contains(out, "restored 1 users, 1 groups") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	wantNewSecret(t, out, restored, readSecretFile(t, secretFile))
	srv.stop(t)
	if strings.Contains(srv.logs.String(), readSecretFile(t, secretFile)) {
		t.Fatal("the cluster secret is in the node's log")
	}
	moved := startServer(t, serverOptions{dataDir: restored, raftAddr: raftAddr,
		extra: []string{"--node-id", "moved1"}})
	r = script(t, moved.clientAddr, fmt.Sprintf("login ann 123\nhis %d\n", gid))
	wantTexts(t, r.results[1].list("messages")[1:], "packed", "shipped")

	// A killed earlier run's temporary file does not get in the way.
	outDir := t.TempDir()
	offline := filepath.Join(outDir, "offline.backup")
	if err := os.WriteFile(filepath.Join(outDir, ".offline.backup.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runSchat(t, "backup", "--data-dir", dataDir, "--out", offline); err != nil {
		t.Fatalf("offline backup: %v\n%s", err, out)
	}
	wantWhole(t, offline)
	wantNames(t, outDir, ".offline.backup.tmp", "offline.backup")
}

// TestBackup_FailureLeavesNothing: a backup that cannot be taken leaves
// no file beside --out, and one whose --out exists leaves it alone.
func TestBackup_FailureLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.backup")
	for _, args := range [][]string{
		{"--addr", freeAddr(t), "--cluster-secret", "x"}, // nothing listens
		{"--data-dir", t.TempDir()},                      // no schat data
	} {
		if _, err := runSchat(t, append([]string{"backup", "--out", out}, args...)...); err == nil {
			t.Fatalf("backup %v succeeded", args)
		}
		wantNames(t, dir)
	}
	if err := os.WriteFile(out, []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runSchat(t, "backup", "--data-dir", t.TempDir(), "--out", out); err == nil ||
		!strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "older" {
		t.Fatalf("the existing file now holds %q", b)
	}
	wantNames(t, dir, "out.backup")
}

// wantNames fails unless dir holds exactly the names given, in order.
func wantNames(t testing.TB, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func wantWhole(t testing.TB, file string) {
	t.Helper()
	out, err := runSchat(t, "snapshot", "inspect", file)
	if err != nil || !strings.Contains(out, "status    whole") ||
		!strings.Contains(out, "1 users, 1 groups, 3 messages") {
		t.Fatalf("inspect %s: %v\n%s", file, err, out)
	}
}

// wantDamagedRefused flips a byte of a copy of file: inspect says it is
// not whole and restore refuses it without creating the directory.
func wantDamagedRefused(t testing.TB, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	bad := filepath.Join(t.TempDir(), "bad.backup")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runSchat(t, "snapshot", "inspect", bad)
	if err == nil || !strings.Contains(out, "NOT WHOLE") {
		t.Fatalf("inspect of a damaged file: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "never")
	if _, err := runSchat(t, "restore", "--from", bad, "--data-dir", dir); err == nil ||
		!strings.Contains(err.Error(), "nothing written") {
		t.Fatalf("restore of a damaged file: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("restore of a damaged file left %s: %v", dir, err)
	}
}

func readSecretFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// wantNewSecret fails unless a restore's output shows, once, the new
// secret that the restored directory keeps, and it is not the old one.
func wantNewSecret(t testing.TB, out, dir, old string) {
	t.Helper()
	secret := readSecretFile(t, filepath.Join(dir, "cluster.secret"))
	if len(secret) < 32 || secret == old || strings.Count(out, secret) != 1 ||
		!strings.Contains(out, "new cluster secret") {
		t.Fatalf("restore output\n%s\nshould show the new secret %q once", out, secret)
	}
}

// TestBackup_Credential: schat backup takes the cluster secret from the
// environment or a file, refuses both a file and a flag, and a node
// refuses a wrong secret.
func TestBackup_Credential(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, serverOptions{dataDir: dataDir})
	secretFile := filepath.Join(dataDir, "cluster.secret")
	dir := t.TempDir()
	backup := func(env []string, args ...string) error {
		t.Helper()
		_, err := runSchatEnv(t, env, append([]string{"backup", "--addr", srv.httpAddr,
			"--out", filepath.Join(dir, "b.backup")}, args...)...)
		return err
	}
	if err := backup([]string{
		"SCHAT_CLUSTER_SECRET=" + readSecretFile(t, secretFile)}); err != nil {
		t.Fatalf("backup with the secret in the environment: %v", err)
	}
	os.Remove(filepath.Join(dir, "b.backup"))
	if err := backup(nil, "--cluster-secret", "wrong"); err == nil ||
		!strings.Contains(err.Error(), "401") {
		t.Fatalf("backup with a wrong secret: %v, want 401", err)
	}
	err := backup(nil, "--cluster-secret", "x", "--cluster-secret-file", secretFile)
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("backup with two secrets: %v", err)
	}
	if err := backup([]string{"SCHAT_CLUSTER_SECRET_FILE=" + secretFile}); err != nil {
		t.Fatalf("backup with the secret file in the environment: %v", err)
	}
	wantNames(t, dir, "b.backup")
}
