package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/schat/schat/node"
	"github.com/schat/schat/storage"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent snapshot of a whole deployment to one file",
		Description: "Through a running node (--addr, authorised by the cluster secret: " +
			"SCHAT_CLUSTER_SECRET, --cluster-secret-file or --cluster-secret), or from " +
			"a stopped node's --data-dir. The file is written under a temporary name, " +
			"checked, and given the name --out, which must not exist.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "addr", EnvVars: []string{"SCHAT_ADMIN_ADDR"},
				Usage: "HTTP address of any node of a running deployment"},
			&cli.StringFlag{Name: "data-dir",
				Usage: "back up this stopped node's data directory instead of a running node"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the backup file to write"},
		}, secretFlags("the operator's credential (with --addr)")...),
		Action: backupAction,
	}
}

func backupAction(c *cli.Context) error {
	addr, dir, out := c.String("addr"), c.String("data-dir"), c.String("out")
	if (addr == "") == (dir == "") {
		return errors.New("give either --addr (a running node) or --data-dir (a stopped one)")
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists; choose another --out", out)
	}
	// An interrupt ends the backup and removes what it had written.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newBar("backup")
	var write func(io.Writer) (*storage.Manifest, error)
	if dir != "" {
		write = func(w io.Writer) (*storage.Manifest, error) {
			return node.BackupDir(node.BackupDirConfig{DataDir: dir, Version: version,
				Estimate: bar.setMax}, w)
		}
	} else {
		write = func(w io.Writer) (*storage.Manifest, error) {
			return fetchBackup(ctx, c, bar, w)
		}
	}
	m, err := writeChecked(ctx, out, bar, write)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Printf("backup written to %s\n", out)
	printManifest(m)
	return nil
}

// fetchBackup streams /cluster/backup from a running node into w.
func fetchBackup(ctx context.Context, c *cli.Context, bar *bar,
	w io.Writer) (*storage.Manifest, error) {
	secret, err := clusterSecret(c)
	if err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, errors.New("--addr needs the cluster secret: SCHAT_CLUSTER_SECRET, " +
			"--cluster-secret-file or --cluster-secret")
	}
	admin, err := newAdminClient(c, secret, 0)
	if err != nil {
		return nil, err
	}
	resp, err := admin.do(ctx, http.MethodGet, "/cluster/backup")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if est, err := strconv.ParseInt(resp.Header.Get(node.BackupEstimateHeader),
		10, 64); err == nil {
		bar.setMax(est)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return nil, fmt.Errorf("backup stream: %w", err)
	}
	return nil, nil
}

// writeChecked runs write into a temporary file next to out while a
// second reader checks the same bytes as they pass, and gives the file
// the name out only once it is whole, never replacing a file there.
func writeChecked(ctx context.Context, out string, bar *bar,
	write func(io.Writer) (*storage.Manifest, error)) (*storage.Manifest, error) {
	f, err := storage.CreatePending(out)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	m, err := teeVerified(f.File, bar, func(w io.Writer) (*storage.Manifest, error) {
		return write(ctxWriter{ctx: ctx, w: w})
	})
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ctxWriter fails every write once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("backup interrupted: %w", context.Cause(c.ctx))
	}
	return c.w.Write(p)
}

// teeVerified writes through a buffer to f and at the same time through a
// pipe to storage.VerifyBackup; the manifest is the verifier's.
func teeVerified(f *os.File, bar *bar,
	write func(io.Writer) (*storage.Manifest, error)) (*storage.Manifest, error) {
	pr, pw := io.Pipe()
	type verdict struct {
		m   *storage.Manifest
		err error
	}
	done := make(chan verdict, 1)
	go func() {
		m, err := storage.VerifyBackup(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // nothing may follow the end
		}
		pr.CloseWithError(err)
		done <- verdict{m, err}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err := write(io.MultiWriter(bw, pw, bar))
	if err == nil {
		err = bw.Flush()
	}
	pw.CloseWithError(err)
	v := <-done
	if err != nil {
		return nil, err
	}
	if v.err != nil {
		return nil, fmt.Errorf("the backup received is not whole: %w", v.err)
	}
	return v.m, nil
}

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "examine backup files",
		Subcommands: []*cli.Command{{
			Name:      "inspect",
			Usage:     "show a backup's manifest and check every checksum",
			ArgsUsage: "FILE",
			Action:    inspectAction,
		}},
	}
}

func inspectAction(c *cli.Context) error {
	path := c.Args().First()
	if path == "" {
		return errors.New("usage: schat snapshot inspect FILE")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	fmt.Printf("file      %s (%s)\n", path, humanBytes(st.Size()))
	br, err := storage.NewBackupReader(f)
	if err == nil {
		err = readAll(br)
	}
	if err != nil {
		if br != nil {
			for _, p := range br.Parts() {
				fmt.Printf("part      %-8s %s, checksum good\n", partLabel(p.Shard),
					humanBytes(p.Size))
			}
		}
		status, verdict := unusable(err)
		fmt.Printf("status    %s: %v\n", status, err)
		return cli.Exit(verdict+"; do not restore from it", 1)
	}
	printManifest(br.Manifest())
	fmt.Printf("status    whole: all %d parts and the file's checksum verified\n",
		len(br.Parts()))
	return nil
}

// unusable words why a file that failed to read cannot be restored: a
// short status and a sentence for the operator.
func unusable(err error) (status, verdict string) {
	switch {
	case errors.Is(err, storage.ErrBackupFormat):
		return "NOT A BACKUP", "the file is not a schat backup"
	case errors.Is(err, storage.ErrBackupVersion):
		return "UNKNOWN FORMAT", "the file is a backup of a format this schat does not read " +
			"(a newer schat may); it is not usable here"
	case errors.Is(err, storage.ErrBackupTruncated):
		return "NOT WHOLE", "the file is not a whole backup: it ends early"
	}
	return "NOT WHOLE", "the file is not a whole backup"
}

func readAll(br *storage.BackupReader) error {
	for {
		if _, err := br.Next(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func printManifest(m *storage.Manifest) {
	if m == nil {
		return
	}
	fmt.Printf("format    %d\nschat     %s\ncluster   %s\ncreated   %s\nsource    %s\n",
		m.Format, m.SchatVersion, m.ClusterID, m.Created.Format("2006-01-02 15:04:05 MST"),
		m.Source)
	fmt.Printf("shards    meta + %d group shard(s)\n", m.Shards)
	fmt.Printf("counts    %d users, %d groups, %d messages, %d files\n",
		m.Counts.Users, m.Counts.Groups, m.Counts.Messages, m.Counts.Files)
	for _, p := range m.Parts {
		fmt.Printf("part      %-8s index %d, term %d, %s, sha256 %s\n", partLabel(p.Shard),
			p.Index, p.Term, humanBytes(p.Size), p.SHA256)
	}
}

func partLabel(shard uint32) string {
	if shard == 0 {
		return "meta"
	}
	return "group-" + strconv.FormatUint(uint64(shard), 10)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func restoreCommand() *cli.Command {
	d := node.DefaultConfig()
	return &cli.Command{
		Name:  "restore",
		Usage: "make a new one-node deployment's data directory from a backup file",
		Description: "The new node has the backup's users, groups and messages, a new cluster " +
			"ID and secret, and itself as the only member; other nodes then join it with " +
			"--join. Start it with the same --node-id and --raft-addr given here.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Required: true, Usage: "the backup file"},
			&cli.StringFlag{Name: "data-dir", Required: true,
				Usage: "the data directory to create (must not exist or be empty)"},
			&cli.StringFlag{Name: "node-id", Value: d.NodeID, Usage: "the restored node's name"},
			&cli.StringFlag{Name: "raft-addr", Value: d.RaftAddr,
				Usage: "node-to-node address the restored node will advertise"},
		},
		Action: restoreAction,
	}
}

func restoreAction(c *cli.Context) error {
	bar := newBar("restore")
	res, err := node.Restore(node.RestoreConfig{From: c.String("from"),
		DataDir: c.String("data-dir"), NodeID: c.String("node-id"),
		RaftAddr: c.String("raft-addr"), Progress: bar.progress})
	bar.finish()
	if err != nil {
		return fmt.Errorf("restore refused, nothing written: %w", err)
	}
	m := res.Manifest
	fmt.Printf("restored %d users, %d groups, %d messages, %d files into %s\n",
		m.Counts.Users, m.Counts.Groups, m.Counts.Messages, m.Counts.Files, c.String("data-dir"))
	fmt.Printf("new cluster %s (the backup's was %s), incarnation %d\n",
		res.ClusterID, m.ClusterID, res.Incarnation)
	printNewSecret(c.String("data-dir"), res.Secret)
	fmt.Printf("start it: schat serve --data-dir %s --node-id %s --raft-addr %s\n",
		c.String("data-dir"), c.String("node-id"), c.String("raft-addr"))
	return nil
}

// bar is a byte progress bar on standard error, drawn only when that is
// a terminal; otherwise every method does nothing.
type bar struct{ pb *progressbar.ProgressBar }

func newBar(desc string) *bar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return &bar{}
	}
	return &bar{pb: progressbar.DefaultBytes(-1, desc)}
}

func (b *bar) setMax(n int64) {
	if b.pb != nil && n > 0 {
		b.pb.ChangeMax64(n)
	}
}

func (b *bar) progress(done, total int64) {
	if b.pb != nil {
		if b.pb.GetMax64() != total {
			b.pb.ChangeMax64(total)
		}
		b.pb.Set64(done)
	}
}

func (b *bar) Write(p []byte) (int, error) {
	if b.pb != nil {
		b.pb.Add(len(p))
	}
	return len(p), nil
}

func (b *bar) finish() {
	if b.pb != nil {
		b.pb.Finish()
	}
}
