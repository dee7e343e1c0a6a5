package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/schat/schat/proto"
)

func TestFrame_RoundTrip(t *testing.T) {
	payloads := [][]byte{{}, []byte("a"), bytes.Repeat([]byte("x"), 70000)}
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	for _, p := range payloads {
		if err := WriteFrame(bw, p); err != nil {
			t.Fatalf("WriteFrame: %v", err)
		}
	}
	bw.Flush()

	br := bufio.NewReader(&b)
	var buf []byte
	for i, want := range payloads {
		got, err := ReadFrame(br, 1<<20, buf)
		if err != nil {
			t.Fatalf("frame %d: ReadFrame: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
		buf = got
	}
	if _, err := ReadFrame(br, 1<<20, buf); err != io.EOF {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestReadFrame_ReusesBuffer(t *testing.T) {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	WriteFrame(bw, []byte("hello"))
	bw.Flush()
	buf := make([]byte, 0, 64)
	got, err := ReadFrame(bufio.NewReader(&b), 64, buf)
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	if &got[0] != &buf[:1][0] {
		t.Fatalf("got a new slice, want the payload in buf")
	}
}

func TestReadFrame_TooLarge(t *testing.T) {
	// A header announcing 1 GiB followed by a short body: the error must
	// come from the header alone, leaving the body unread.
	var in bytes.Buffer
	binary.Write(&in, binary.BigEndian, uint32(1<<30))
	in.WriteString("body")
	br := bufio.NewReader(&in)

	_, err := ReadFrame(br, 1024, nil)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if n := br.Buffered(); n != 8 {
		t.Fatalf("got %d bytes still buffered, want the 8 of header and body", n)
	}
}

func TestReadFrame_TooLargeDoesNotAllocatePayload(t *testing.T) {
	hdr := binary.BigEndian.AppendUint32(nil, 1<<30)
	r := bytes.NewReader(hdr)
	br := bufio.NewReader(r)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		r.Reset(hdr)
		br.Reset(r)
		if _, err := ReadFrame(br, 1024, nil); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Only the error value is allocated, never the announced gigabyte.
	if got := (after.TotalAlloc - before.TotalAlloc) / runs; got > 1024 {
		t.Fatalf("got %d bytes allocated per oversized frame, want under 1 KiB", got)
	}
}

func TestReadFrame_Truncated(t *testing.T) {
	full := binary.BigEndian.AppendUint32(nil, 10)
	full = append(full, "0123456789"...)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"partial header", full[:2], io.ErrUnexpectedEOF},
		{"header only", full[:4], io.ErrUnexpectedEOF},
		{"partial body", full[:9], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)), 64, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// frameSeeds are inputs for FuzzReadFrame: valid, empty, oversized and
// truncated frame streams.
func frameSeeds() [][]byte {
	one := binary.BigEndian.AppendUint32(nil, 3)
	one = append(one, "abc"...)
	return [][]byte{
		nil,
		one,
		append(append([]byte{}, one...), one...),
		binary.BigEndian.AppendUint32(nil, 0),
		binary.BigEndian.AppendUint32(nil, 1<<31),
		one[:5],
		{0xff, 0xff},
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	const max = 1024
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		var buf []byte
		consumed := 0
		for {
			p, err := ReadFrame(br, max, buf)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(p) > max {
				t.Fatalf("got a %d-byte frame, over the %d limit", len(p), max)
			}
			consumed += frameHeaderLen + len(p)
			if consumed > len(in) {
				t.Fatalf("consumed %d bytes of %d", consumed, len(in))
			}
			buf = p
		}
	})
}

// clientFrameSeeds are protobuf and protojson inputs for the decoder.
func clientFrameSeeds(t testing.TB) [][]byte {
	ping, err := proto.Marshal(&pb.ClientFrame{Id: 1, Body: &pb.ClientFrame_Ping{
		Ping: &pb.PingRequest{ClientTimeMs: 5},
	}})
	if err != nil {
		t.Fatal(err)
	}
	send, err := proto.Marshal(&pb.ClientFrame{Id: 2, Body: &pb.ClientFrame_SendMessage{
		SendMessage: &pb.SendMessageRequest{GroupId: 3, Text: "héllo"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		nil,
		ping,
		send,
		unknownRequest(9),
		send[:len(send)-2],
		{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		[]byte(`{"id":"4","ping":{"clientTimeMs":"1"}}`),
		[]byte(`{"id":"5","futureRequest":{}}`),
		[]byte(`{"id":`),
		[]byte(strings.Repeat("[", 100)),
	}
}

// unknownRequest encodes a ClientFrame with the given id and a body field
// this version does not know, as a newer client would send.
// TestDecodeFrame_ErrorQuotesNoInput refuses frames whose decoder error
// would repeat a password, keeping ErrBadFrame and where decoding stopped.
func TestDecodeFrame_ErrorQuotesNoInput(t *testing.T) {
	const secret = "Pw-secret-71c2"
	for _, tc := range []struct {
		name    string
		in      []byte
		text    bool
		wantPos string
	}{
		{"string for a number", []byte(`{"id":"` + secret + `"}`), true, "line 1:7"},
		{"bare word", []byte(`{"login":{"password":` + secret + `}}`), true, "line 1:22"},
		{"cut short", []byte(`{"login":{"password":"` + secret), true, ""},
		{"bad utf-8", badUTF8Password(secret), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := decodeFrame(tc.in, tc.text, new(pb.ClientFrame))
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want ErrBadFrame", err)
			}
			if strings.Contains(err.Error(), secret[3:]) {
				t.Fatalf("got %q, which quotes the input", err)
			}
			if !strings.Contains(err.Error(), tc.wantPos) {
				t.Fatalf("got %q, want the place %q", err, tc.wantPos)
			}
		})
	}
}

// badUTF8Password is a login frame whose password is pw and an invalid
// UTF-8 byte.
func badUTF8Password(pw string) []byte {
	inner := protowire.AppendTag(nil, 2, protowire.BytesType)
	inner = protowire.AppendBytes(inner, append([]byte(pw), 0xff))
	b := protowire.AppendTag(nil, 11, protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

func unknownRequest(id uint64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, id)
	b = protowire.AppendTag(b, 999, protowire.BytesType)
	return protowire.AppendBytes(b, nil)
}

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range clientFrameSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in []byte, text bool) {
		var cf pb.ClientFrame
		if err := decodeFrame(in, text, &cf); err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want an error wrapping ErrBadFrame", err)
			}
			return
		}
		// Whatever decodes must encode again.
		if _, err := proto.Marshal(&cf); err != nil {
			t.Fatalf("decoded frame does not re-encode: %v", err)
		}
	})
}
