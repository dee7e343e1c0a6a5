package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "github.com/schat/schat/proto"
	"github.com/schat/schat/transport"
)

// The chat client's connection: it dials the addresses in turn, dials
// again when the connection is lost (starting from the next address, so
// that a node that went away is passed over) and resumes the session
// there, and sends a retryable command again when its outcome is unknown.

// dial connects to the first of the addresses that answers, trying each
// once from index from on, and starts printing the connection's events.
func (s *chatSession) dial(ctx context.Context, from int) error {
	var errs []error
	for i := range s.cfg.addrs {
		at := (from + i) % len(s.cfg.addrs)
		c, err := transport.Dial(ctx, transport.ClientConfig{Addr: s.cfg.addrs[at],
			TLS: s.cfg.tls, DialTimeout: s.cfg.timeout, Logger: s.log})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.c, s.at = c, at
		s.wg.Add(1)
		go s.pump(c)
		return nil
	}
	return errors.Join(errs...)
}

// addr is the address of the current connection.
func (s *chatSession) addr() string { return s.cfg.addrs[s.at] }

// client returns a live connection, dialling again if the last one was
// lost and resuming the session on it.
func (s *chatSession) client(ctx context.Context) (*transport.Client, error) {
	select {
	case <-s.c.Done():
	default:
		return s.c, nil
	}
	s.c.Close()
	if err := s.dial(ctx, s.at+1); err != nil {
		return nil, &clientError{code: codeDisconnected, detail: err.Error()}
	}
	if s.token != "" {
		s.resume(ctx)
	}
	return s.c, nil
}

// resume logs the new connection in with the session token and reports
// the outcome as an event line.
func (s *chatSession) resume(ctx context.Context) {
	lr, err := s.c.Resume(ctx, s.token)
	if err != nil {
		s.uid, s.token = 0, ""
		s.out.event("reconnected", obj{{"addr", s.addr()}, {"resumed", false},
			{"err", err.Error()}}, "reconnected to "+s.addr()+"; session not resumed: "+
			err.Error())
		return
	}
	s.loggedIn(lr)
	s.out.event("reconnected", obj{{"addr", s.addr()}, {"resumed", true}, {"uid", s.uid}},
		fmt.Sprintf("reconnected to %s; resumed session of uid:%d", s.addr(), s.uid))
	s.noticeHistory(ctx, lr)
	for _, n := range lr.Notices {
		name, fields, text := describeEvent(n.Event)
		s.out.event(name, fields, text)
	}
	s.ackNotices(ctx, lr.Notices)
}

// maxAttempts bounds how often a retryable command is sent.
const maxAttempts = 3

// retryPause is the wait before sending a command again.
const retryPause = 200 * time.Millisecond

// send sends f and waits for its answer. A command marked retry, whose
// request lands once however often it is sent (a read, or a write with a
// client-chosen ID), is sent again on a live connection while its outcome
// is unknown: the connection was lost, or the server answered UNAVAILABLE
// or TIMEOUT. It stops after maxAttempts or when ctx ends, and returns
// the last outcome.
func (s *chatSession) send(ctx context.Context, cmd *command,
	f *pb.ClientFrame) (*pb.Response, error) {
	for attempt := 1; ; attempt++ {
		c, err := s.client(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(ctx, f)
		if !cmd.retry || attempt == maxAttempts || !unknownOutcome(resp, err) {
			return resp, err
		}
		select {
		case <-time.After(retryPause):
		case <-ctx.Done():
			return resp, err
		}
	}
}

// unknownOutcome reports whether a request may or may not have been
// carried out: its connection was lost before the answer, or the server
// could not tell in time.
func unknownOutcome(resp *pb.Response, err error) bool {
	if err != nil {
		return errors.Is(err, transport.ErrConnLost)
	}
	return resp.Code == pb.Code_UNAVAILABLE || resp.Code == pb.Code_TIMEOUT
}
