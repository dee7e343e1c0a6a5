package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:  "chat",
		Usage: "talk to a server interactively or from a script",
		Description: "Reads commands from standard input, one a line. On a terminal it\n" +
			"prompts and prints events as they arrive; type help for the commands.\n" +
			"Otherwise it runs each line in order, printing one result line per\n" +
			"command and one line per event, skipping blank lines and lines\n" +
			"starting with #, and exits non-zero if any command failed.\n\n" +
			"A lost connection is dialled again at the next command, at the next\n" +
			"--addr, and the session resumed. A command whose answer was lost with\n" +
			"its connection is sent again if a repeat cannot land twice: chat and\n" +
			"create carry an ID of their own for that, and reads are harmless.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7420", EnvVars: []string{"SCHAT_ADDR"},
				Usage: "server address: host:port (TCP) or ws://host:port/ws; several, " +
					"comma-separated, are tried in turn when connecting and reconnecting"},
			&cli.BoolFlag{Name: "json", Usage: "print every line as one JSON object"},
			&cli.StringFlag{Name: "http", EnvVars: []string{"SCHAT_HTTP"},
				Usage: "the node's HTTP address for files " +
					"(default: from --addr, port 7480 for TCP)"},
			&cli.DurationFlag{Name: "linger",
				Usage: "after the last command, keep printing events this long"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second,
				Usage: "how long to wait for each command's answer"},
			&cli.BoolFlag{Name: "tls", Usage: "connect with TLS (implied by wss://)"},
			&cli.StringFlag{Name: "tls-ca",
				Usage: "PEM file of the CA that signed the server's certificate (implies --tls)"},
			&cli.BoolFlag{Name: "tls-insecure",
				Usage: "accept any server certificate; for testing only (implies --tls)"},
		},
		Action: chatMain,
	}
}

// chatConfig is what the chat client takes from its flags.
type chatConfig struct {
	addrs   []string
	http    string // base URL of the node's HTTP port, for files
	tls     *tls.Config
	json    bool
	linger  time.Duration
	timeout time.Duration
}

func chatConfigFrom(c *cli.Context) (chatConfig, error) {
	cfg := chatConfig{addrs: splitList([]string{c.String("addr")}), json: c.Bool("json"),
		linger: c.Duration("linger"), timeout: c.Duration("timeout")}
	if cfg.timeout <= 0 {
		return cfg, fmt.Errorf("--timeout must be positive")
	}
	if len(cfg.addrs) == 0 {
		return cfg, fmt.Errorf("--addr needs at least one address")
	}
	useTLS := wantsTLS(c)
	cfg.http = httpBase(c.String("http"), cfg.addrs[0], useTLS)
	if !useTLS {
		return cfg, nil
	}
	for _, a := range cfg.addrs {
		if strings.HasPrefix(a, "ws://") {
			return cfg, fmt.Errorf("TLS over WebSocket needs a wss:// address, not %s", a)
		}
	}
	var err error
	cfg.tls, err = tlsClientConfig(c)
	return cfg, err
}

func chatMain(c *cli.Context) error {
	cfg, err := chatConfigFrom(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	interactive := isTerminal(os.Stdin)
	prompt := ""
	if interactive && !cfg.json {
		prompt = "schat> "
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := &chatSession{cfg: cfg, out: newPrinter(os.Stdout, cfg.json, prompt), log: log}
	if err := s.dial(ctx, 0); err != nil {
		return err
	}
	if prompt != "" {
		s.out.lines("connected to " + s.addr() + "; type help for the commands")
	}

	stopInput := make(chan struct{})
	defer close(stopInput)
	failed := s.loop(ctx, readLines(os.Stdin, stopInput))
	s.linger(ctx)
	s.close()
	if failed > 0 && !interactive {
		return fmt.Errorf("%d command(s) failed", failed)
	}
	return nil
}

// isTerminal reports whether f is a character device, as a terminal is.
// Other character devices pass too: with input from /dev/null the client
// prompts once and exits at the end of input, as on a terminal.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// inputLine is one line of standard input, or the error that ended it.
type inputLine struct {
	text string
	err  error
}

// readLines reads r line by line until its end or until stop is closed.
// The goroutine may stay blocked in a read after stop; the process is
// about to exit then.
func readLines(r io.Reader, stop <-chan struct{}) <-chan inputLine {
	ch := make(chan inputLine)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case ch <- inputLine{text: sc.Text()}:
			case <-stop:
				return
			}
		}
		if err := sc.Err(); err != nil {
			select {
			case ch <- inputLine{err: err}:
			case <-stop:
			}
		}
	}()
	return ch
}

// chatSession is one run of the chat client: a connection, replaced when
// it is lost, and who is logged in on it.
type chatSession struct {
	cfg chatConfig
	out *printer
	log *slog.Logger

	c       *transport.Client // the current connection; replaced on reconnect
	at      int               // index in cfg.addrs of c's address
	wg      sync.WaitGroup    // event pumps and notice acknowledgements
	closing atomic.Bool       // set by close: a lost connection is expected

	// State of the command loop, used by it alone: who is logged in, and
	// where the paged listings go on.
	uid         uint64
	token       string
	groundAfter uint64                      // g_ground's next page starts after it
	appsNext    *pb.ListApplicationsRequest // apps next; nil: nothing to continue

	hist history // the server's incarnation and the messages printed
}

// loggedIn records the session a login or resume started.
func (s *chatSession) loggedIn(lr *pb.LoginResponse) {
	s.uid = lr.GetUser().GetUserId()
	if lr.Token != "" {
		s.token = lr.Token
	}
	s.appsNext = nextApps(&pb.ListApplicationsRequest{}, lr.Applications, lr.MoreApplications)
}

// ackNotices acknowledges notices that were printed. A failure only means
// they are delivered again at the next login, so it is logged, not
// reported as the command's result.
func (s *chatSession) ackNotices(ctx context.Context, ns []*pb.Notice) {
	if len(ns) == 0 {
		return
	}
	ids := make([]uint64, len(ns))
	for i, n := range ns {
		ids[i] = n.Id
	}
	if err := s.c.AckNotices(ctx, ids...); err != nil {
		s.log.Warn("notices not acknowledged", "err", err)
	}
}

// pump prints c's events until the connection ends and acknowledges the
// notices among them. It runs on its own goroutine, one per connection.
func (s *chatSession) pump(c *transport.Client) {
	defer s.wg.Done()
	for e := range c.Events() {
		if m := e.GetMessage(); m != nil && !s.hist.admit(m) {
			continue // printed already, from a replay after a restore
		}
		name, fields, text := describeEvent(e)
		s.out.event(name, fields, text)
		if id := e.GetNoticeId(); id != 0 {
			// Acknowledged on another goroutine: the reader waits for this
			// one to take the next event before it delivers any response.
			s.wg.Add(1)
			go s.ack(c, id)
		}
	}
	if !s.closing.Load() {
		msg := fmt.Sprint(c.Err())
		s.out.event("disconnected", obj{{"err", msg}}, "disconnected: "+msg)
	}
}

func (s *chatSession) ack(c *transport.Client, id uint64) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.timeout)
	defer cancel()
	if err := c.AckNotices(ctx, id); err != nil && !s.closing.Load() {
		s.log.Warn("notice not acknowledged", "err", err)
	}
}

// loop runs commands from in until it ends, exit, or ctx is done, and
// returns how many failed.
func (s *chatSession) loop(ctx context.Context, in <-chan inputLine) (failed int) {
	for {
		s.out.showPrompt()
		var l inputLine
		var ok bool
		select {
		case l, ok = <-in:
		case <-ctx.Done():
			return failed
		}
		if !ok {
			s.out.endInput()
			return failed
		}
		s.out.inputRead()
		if l.err != nil {
			s.log.Error("cannot read commands", "err", l.err)
			return failed + 1
		}
		line := strings.TrimSpace(l.text)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rep := s.execute(ctx, line)
		s.out.result(rep)
		if !rep.ok() {
			failed++
		}
		if rep.exit {
			return failed
		}
	}
}

// execute runs one command line and reports its outcome.
func (s *chatSession) execute(ctx context.Context, line string) *report {
	cmd, a, f, err := parseLine(line)
	rep := &report{cmd: a.word()}
	if cmd != nil {
		rep.cmd, rep.label = cmd.name, cmd.label
	}
	if err == nil && cmd.prepare != nil {
		err = cmd.prepare(s, a, f)
	}
	if err != nil {
		return rep.fail(err)
	}
	rep.code = codeOK
	switch {
	case cmd.name == "help":
		if rep.fields, err = helpFields(a); err != nil {
			rep.fail(err)
		}
		return rep
	case cmd.name == "exit":
		rep.exit = true
		return rep
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	if cmd.run != nil {
		if rep.fields, err = cmd.run(ctx, s, a); err != nil {
			rep.fail(err)
		}
		return rep
	}
	if cmd.before != nil {
		if err := cmd.before(ctx, s, a, f); err != nil {
			return rep.fail(err)
		}
	}
	resp, err := s.send(ctx, cmd, f)
	if err == nil && resp.Code != pb.Code_OK {
		err = &pb.Error{Code: resp.Code, Detail: resp.Detail}
	}
	if err != nil {
		return rep.fail(err)
	}
	if rep.fields, err = cmd.show(ctx, s, f, resp); err != nil {
		rep.fail(err)
	}
	return rep
}

// fail records err as the outcome of the command.
func (r *report) fail(err error) *report {
	var ce *clientError
	var pe *pb.Error
	switch {
	case errors.As(err, &ce):
		r.code, r.detail = ce.code, ce.detail
	case errors.As(err, &pe):
		r.code, r.detail = pe.Code.String(), pe.Detail
	case errors.Is(err, context.DeadlineExceeded):
		r.code, r.detail = codeTimeout, "no answer in time; the outcome is unknown"
	case errors.Is(err, context.Canceled):
		r.code, r.detail = codeTimeout, "interrupted; the outcome is unknown"
	default:
		r.code, r.detail = codeDisconnected, err.Error()
	}
	return r
}

// linger keeps printing events for the configured time after the last
// command, or until the connection ends.
func (s *chatSession) linger(ctx context.Context) {
	if s.cfg.linger <= 0 {
		return
	}
	t := time.NewTimer(s.cfg.linger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.c.Done():
	case <-ctx.Done():
	}
}

// close ends the connection and waits until its events are printed.
func (s *chatSession) close() {
	s.closing.Store(true)
	s.c.Close()
	s.wg.Wait()
}
