// Package transport carries client bytes to the server and back: the
// length-prefixed TCP framing, the WebSocket endpoint for browsers, the
// per-connection goroutines that read requests, answer them in order and
// push events, and the Go client library built on the same wire.
//
// On TCP a frame is a 4-byte big-endian length followed by that many bytes
// of protobuf (a pb.ClientFrame from the client, a pb.ServerFrame from the
// server). On WebSocket each message is one frame: binary messages carry
// protobuf, text messages the same frames as protojson.
//
// Everything read from the network is bounded before memory is allocated
// for it: a frame longer than the configured maximum closes the connection,
// outbound queues have a fixed capacity, and pipelined requests beyond a
// fixed number in flight stop the connection's read loop.
package transport

import "errors"

// Errors returned by this package.
var (
	// ErrFrameTooLarge means a frame's length exceeds the allowed maximum.
	// The body of such a frame is never read.
	ErrFrameTooLarge = errors.New("transport: frame too large")

	// ErrBadFrame means a frame's payload could not be decoded.
	ErrBadFrame = errors.New("transport: undecodable frame")

	// ErrInvalidConfig means a ServerConfig or ClientConfig failed Validate.
	ErrInvalidConfig = errors.New("transport: invalid config")

	// ErrServerClosed is returned by ServeTCP after Close.
	ErrServerClosed = errors.New("transport: server closed")

	// ErrClientClosed is the Client's error after its Close was called.
	ErrClientClosed = errors.New("transport: client closed")

	// ErrConnLost wraps the cause when a Client's connection ends without
	// Close being called.
	ErrConnLost = errors.New("transport: connection lost")

	// ErrNotRequest means Client.Do was given a frame that is not a
	// request.
	ErrNotRequest = errors.New("transport: not a request")

	// ErrNoBody means the server answered OK without the body the request
	// type calls for.
	ErrNoBody = errors.New("transport: response without a body")

	// ErrSessionEnded ends a Session whose login the server ended: a
	// SessionEnded event arrived, or every node rejected its token.
	ErrSessionEnded = errors.New("transport: session ended by the server")

	// ErrEventsOverflow ends a Client's connection when its Events channel
	// is full: the caller stopped draining events.
	ErrEventsOverflow = errors.New("transport: events not drained")

	// ErrMuxClosed is returned by a node port channel's Accept after Close.
	ErrMuxClosed = errors.New("transport: node port closed")

	// ErrNotAuthorized means a node connection did not prove it holds the
	// cluster secret.
	ErrNotAuthorized = errors.New("transport: node not authorized")

	// ErrIsolated means the node port is cut off by SetIsolated.
	ErrIsolated = errors.New("transport: node isolated")

	// ErrBadHeader means a node connection did not open with a valid
	// header.
	ErrBadHeader = errors.New("transport: bad node connection header")
)
