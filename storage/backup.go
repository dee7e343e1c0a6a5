package storage

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// A backup file carries a whole deployment: one part per shard, each the
// shard's snapshot stream exactly as the state machine writes it, then a
// manifest and a checksum over everything:
//
//	header   magic "SCHATBAK" | format u32
//	part     'P' | shard u32 | chunk* | u32 0 | sha256(part bytes)
//	chunk    length u32 (1..MaxBackupChunk) | bytes
//	manifest 'M' | length u32 (1..MaxManifest) | JSON
//	end      'E' | sha256(every byte before it, 'E' included)
//
// Parts come in shard order, 0 (meta) first. A part's length is not known
// when it starts (the state machine's stream is opaque here), so it is
// chunked; the manifest comes last because it holds every part's checksum.
// All integers are big-endian. Every length is bounded before anything is
// allocated for it: a backup file is untrusted input.
const (
	backupMagic = "SCHATBAK"
	// BackupFormat is the version of the backup file layout this code
	// writes and the only one it reads.
	BackupFormat = 1
	// MaxBackupChunk bounds one chunk of a part.
	MaxBackupChunk = 1 << 20
	// MaxManifest bounds the manifest's JSON.
	MaxManifest = 1 << 20
	// MaxBackupParts bounds the number of parts (shards) in a backup.
	MaxBackupParts = 1001

	backupChunk  = 256 << 10 // chunk size written
	tagPart      = 'P'
	tagManifest  = 'M'
	tagEnd       = 'E'
	backupHeader = len(backupMagic) + 4
)

// Errors of reading a backup file.
var (
	// ErrBackupFormat means the file is not a schat backup at all.
	ErrBackupFormat = errors.New("storage: not a schat backup file")
	// ErrBackupVersion means the file is a backup of a format this
	// version does not know.
	ErrBackupVersion = errors.New("storage: unknown backup format version")
	// ErrBackupCorrupt means a checksum or a structural check failed.
	ErrBackupCorrupt = errors.New("storage: backup file is corrupt")
	// ErrBackupTruncated means the file ends before its end marker.
	ErrBackupTruncated = errors.New("storage: backup file is truncated")
)

// Manifest describes a backup. It is written after the parts.
type Manifest struct {
	Format       int        `json:"format"`
	SchatVersion string     `json:"schat_version"`
	ClusterID    string     `json:"cluster_id"`
	Shards       int        `json:"shards"` // group shards; parts are Shards+1
	Created      time.Time  `json:"created"`
	Source       string     `json:"source"` // the node it was taken on
	Counts       Counts     `json:"counts"`
	Parts        []PartInfo `json:"parts"`
}

// Counts are the records a backup holds, summed over its shards.
type Counts struct {
	Users    uint64 `json:"users"`
	Groups   uint64 `json:"groups"`
	Messages uint64 `json:"messages"`
	Files    uint64 `json:"files"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Users += o.Users
	c.Groups += o.Groups
	c.Messages += o.Messages
	c.Files += o.Files
}

// PartInfo describes one shard's part: the raft index and term its state
// is at, its size and its checksum.
type PartInfo struct {
	Shard  uint32 `json:"shard"`
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// BackupSize is the size of a backup file whose parts have the given
// sizes, without its manifest (a few hundred bytes per part).
func BackupSize(parts []int64) int64 {
	n := int64(backupHeader) + 1 + sha256.Size // header, end record
	for _, p := range parts {
		chunks := (p + backupChunk - 1) / backupChunk
		n += 1 + 4 + 4*chunks + p + 4 + sha256.Size
	}
	return n + 1 + 4 // the manifest's tag and length
}

// BackupWriter writes a backup file. Call WritePart for shards 0..K in
// order, then Finish. It is not safe for concurrent use.
type BackupWriter struct {
	w     io.Writer // w hashes into whole
	whole hash.Hash
	parts []PartInfo
	buf   []byte
}

// NewBackupWriter writes the file header to w.
func NewBackupWriter(w io.Writer) (*BackupWriter, error) {
	whole := sha256.New()
	b := &BackupWriter{w: io.MultiWriter(w, whole), whole: whole,
		buf: make([]byte, 0, backupChunk)}
	h := binary.BigEndian.AppendUint32([]byte(backupMagic), BackupFormat)
	if _, err := b.w.Write(h); err != nil {
		return nil, fmt.Errorf("write backup header: %w", err)
	}
	return b, nil
}

// WritePart writes the next shard's part: whatever write writes to the
// io.Writer it is given. index and term go into the manifest.
func (b *BackupWriter) WritePart(shard uint32, index, term uint64,
	write func(io.Writer) error) (PartInfo, error) {
	if want := uint32(len(b.parts)); shard != want {
		return PartInfo{}, fmt.Errorf("storage: backup part %d written as %d", want, shard)
	}
	if _, err := b.w.Write(binary.BigEndian.AppendUint32([]byte{tagPart}, shard)); err != nil {
		return PartInfo{}, err
	}
	cw := &chunkWriter{out: b.w, buf: b.buf[:0], sum: sha256.New()}
	if err := write(cw); err != nil {
		return PartInfo{}, fmt.Errorf("backup shard %d: %w", shard, err)
	}
	if err := cw.close(); err != nil {
		return PartInfo{}, fmt.Errorf("backup shard %d: %w", shard, err)
	}
	p := PartInfo{Shard: shard, Index: index, Term: term, Size: cw.size,
		SHA256: hex.EncodeToString(cw.sum.Sum(nil))}
	b.parts = append(b.parts, p)
	return p, nil
}

// Finish writes m, with its format and parts filled in, and the end
// checksum.
func (b *BackupWriter) Finish(m *Manifest) error {
	m.Format = BackupFormat
	m.Parts = b.parts
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(js) > MaxManifest {
		return fmt.Errorf("storage: manifest of %d bytes is over the limit", len(js))
	}
	rec := binary.BigEndian.AppendUint32([]byte{tagManifest}, uint32(len(js)))
	if _, err := b.w.Write(append(rec, js...)); err != nil {
		return err
	}
	if _, err := b.w.Write([]byte{tagEnd}); err != nil {
		return err
	}
	_, err = b.w.Write(b.whole.Sum(nil)) // hashed too, which is harmless
	return err
}

// chunkWriter frames a part's bytes into chunks and checksums them.
type chunkWriter struct {
	out  io.Writer
	buf  []byte
	sum  hash.Hash
	size int64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf = c.buf[:len(c.buf)+k]
		p, n = p[k:], n+k
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(c.buf)))
	if _, err := c.out.Write(l[:]); err != nil {
		return err
	}
	if _, err := c.out.Write(c.buf); err != nil {
		return err
	}
	c.sum.Write(c.buf)
	c.size += int64(len(c.buf))
	c.buf = c.buf[:0]
	return nil
}

func (c *chunkWriter) close() error {
	if err := c.flush(); err != nil {
		return err
	}
	_, err := c.out.Write(append(make([]byte, 4), c.sum.Sum(nil)...))
	return err
}

// BackupReader reads a backup file front to back, checking every length,
// checksum and the manifest against what it read. Nothing it returns is
// to be trusted before Next has returned io.EOF: only then is the whole
// file checked.
type BackupReader struct {
	br    *bufio.Reader
	whole hash.Hash
	parts []PartInfo // as read, with sizes and checksums computed here
	cur   *Part
	m     *Manifest
	done  bool
}

// NewBackupReader reads and checks the file header.
func NewBackupReader(r io.Reader) (*BackupReader, error) {
	b := &BackupReader{br: bufio.NewReaderSize(r, 1<<20), whole: sha256.New()}
	var h [backupHeader]byte
	if err := b.read(h[:]); err != nil {
		return nil, err
	}
	if string(h[:len(backupMagic)]) != backupMagic {
		return nil, ErrBackupFormat
	}
	if v := binary.BigEndian.Uint32(h[len(backupMagic):]); v != BackupFormat {
		return nil, fmt.Errorf("%w: the file has format %d, this schat reads %d",
			ErrBackupVersion, v, BackupFormat)
	}
	return b, nil
}

// read fills p from the file and adds it to the whole-file checksum. An
// early end of the file is ErrBackupTruncated.
func (b *BackupReader) read(p []byte) error {
	if _, err := io.ReadFull(b.br, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrBackupTruncated
		}
		return err
	}
	b.whole.Write(p)
	return nil
}

// Next returns the next part, first reading what is left of the previous
// one. After the last part it reads and checks the manifest and the end
// checksum and returns io.EOF; Manifest then returns the manifest.
func (b *BackupReader) Next() (*Part, error) {
	if b.done {
		return nil, io.EOF
	}
	if b.cur != nil {
		if _, err := io.Copy(io.Discard, b.cur); err != nil {
			return nil, err
		}
		b.parts = append(b.parts, b.cur.info)
		b.cur = nil
	}
	var tag [1]byte
	if err := b.read(tag[:]); err != nil {
		return nil, err
	}
	switch tag[0] {
	case tagPart:
		return b.startPart()
	case tagManifest:
		if err := b.finish(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	return nil, fmt.Errorf("%w: unknown record %q", ErrBackupCorrupt, tag[0])
}

func (b *BackupReader) startPart() (*Part, error) {
	var s [4]byte
	if err := b.read(s[:]); err != nil {
		return nil, err
	}
	shard := binary.BigEndian.Uint32(s[:])
	if want := uint32(len(b.parts)); shard != want || len(b.parts) >= MaxBackupParts {
		return nil, fmt.Errorf("%w: part for shard %d where shard %d belongs",
			ErrBackupCorrupt, shard, want)
	}
	b.cur = &Part{Shard: shard, b: b, sum: sha256.New(), info: PartInfo{Shard: shard}}
	return b.cur, nil
}

// finish reads the manifest and the end checksum and checks both.
func (b *BackupReader) finish() error {
	var l [4]byte
	if err := b.read(l[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || n > MaxManifest {
		return fmt.Errorf("%w: manifest length %d", ErrBackupCorrupt, n)
	}
	js := make([]byte, n)
	if err := b.read(js); err != nil {
		return err
	}
	if err := b.readEnd(); err != nil {
		return err
	}
	var m Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		return fmt.Errorf("%w: manifest: %v", ErrBackupCorrupt, err)
	}
	if err := b.checkManifest(&m); err != nil {
		return err
	}
	b.m, b.done = &m, true
	return nil
}

func (b *BackupReader) readEnd() error {
	var tag [1]byte
	if err := b.read(tag[:]); err != nil {
		return err
	}
	if tag[0] != tagEnd {
		return fmt.Errorf("%w: no end record after the manifest", ErrBackupCorrupt)
	}
	want := b.whole.Sum(nil)
	var got [sha256.Size]byte
	if err := b.read(got[:]); err != nil {
		return err
	}
	if string(got[:]) != string(want) {
		return fmt.Errorf("%w: the file's checksum does not match", ErrBackupCorrupt)
	}
	return nil
}

// checkManifest compares the manifest with the parts as read.
func (b *BackupReader) checkManifest(m *Manifest) error {
	switch {
	case m.Format != BackupFormat:
		return fmt.Errorf("%w: manifest says format %d", ErrBackupVersion, m.Format)
	case m.Shards < 1 || m.Shards+1 != len(b.parts) || len(m.Parts) != len(b.parts):
		return fmt.Errorf("%w: manifest names %d shards and %d parts; the file has %d parts",
			ErrBackupCorrupt, m.Shards, len(m.Parts), len(b.parts))
	}
	for i, p := range m.Parts {
		got := b.parts[i]
		if p.Shard != got.Shard || p.Size != got.Size || p.SHA256 != got.SHA256 {
			return fmt.Errorf("%w: part %d differs from its manifest entry", ErrBackupCorrupt, i)
		}
		if p.Index == 0 {
			return fmt.Errorf("%w: part %d has no raft index", ErrBackupCorrupt, i)
		}
	}
	return nil
}

// Manifest returns the manifest once Next has returned io.EOF, else nil.
func (b *BackupReader) Manifest() *Manifest { return b.m }

// Part is one shard's part being read. Read returns its bytes, and io.EOF
// only after the part's checksum has matched.
type Part struct {
	Shard uint32

	b    *BackupReader
	sum  hash.Hash
	left uint32 // bytes left in the current chunk
	info PartInfo
	end  bool
}

func (p *Part) Read(buf []byte) (int, error) {
	if p.end {
		return 0, io.EOF
	}
	if p.left == 0 {
		if err := p.nextChunk(); err != nil {
			return 0, err
		}
		if p.end {
			return 0, io.EOF
		}
	}
	if uint32(len(buf)) > p.left {
		buf = buf[:p.left]
	}
	if err := p.b.read(buf); err != nil {
		return 0, err
	}
	p.sum.Write(buf)
	p.left -= uint32(len(buf))
	p.info.Size += int64(len(buf))
	return len(buf), nil
}

// nextChunk reads a chunk length; a zero length ends the part, whose
// checksum follows.
func (p *Part) nextChunk() error {
	var l [4]byte
	if err := p.b.read(l[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > MaxBackupChunk {
		return fmt.Errorf("%w: chunk of %d bytes in shard %d", ErrBackupCorrupt, n, p.Shard)
	}
	if n > 0 {
		p.left = n
		return nil
	}
	var got [sha256.Size]byte
	if err := p.b.read(got[:]); err != nil {
		return err
	}
	want := p.sum.Sum(nil)
	if string(got[:]) != string(want) {
		return fmt.Errorf("%w: checksum of shard %d does not match", ErrBackupCorrupt, p.Shard)
	}
	p.info.SHA256 = hex.EncodeToString(want)
	p.end = true
	return nil
}

// Info is the part's size and checksum as read; complete once Read has
// returned io.EOF.
func (p *Part) Info() PartInfo { return p.info }

// Parts returns the parts read completely so far, with their sizes and
// checksums as computed while reading.
func (b *BackupReader) Parts() []PartInfo { return b.parts }

// VerifyBackup reads a whole backup from r, checking every length and
// checksum, and returns its manifest.
func VerifyBackup(r io.Reader) (*Manifest, error) {
	br, err := NewBackupReader(r)
	if err != nil {
		return nil, err
	}
	for {
		if _, err := br.Next(); errors.Is(err, io.EOF) {
			return br.Manifest(), nil
		} else if err != nil {
			return nil, err
		}
	}
}
