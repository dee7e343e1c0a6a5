package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// testBackup builds a backup of shards+1 parts; part i holds size[i]
// bytes of a pattern.
func testBackup(t testing.TB, sizes ...int) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw, err := NewBackupWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		data := bytes.Repeat([]byte{byte('a' + i)}, n)
		_, err := bw.WritePart(uint32(i), uint64(100+i), 3, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	m := &Manifest{ClusterID: "c1", Shards: len(sizes) - 1, Counts: Counts{Users: 2}}
	if err := bw.Finish(m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBackup_RoundTrip(t *testing.T) {
	file := testBackup(t, 10, backupChunk*2+5, 0)
	br, err := NewBackupReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{10, backupChunk*2 + 5, 0} {
		p, err := br.Next()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if len(got) != want || (want > 0 && got[0] != byte('a'+i)) {
			t.Fatalf("part %d: got %d bytes, want %d", i, len(got), want)
		}
	}
	if _, err := br.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the parts: got %v, want io.EOF", err)
	}
	m := br.Manifest()
	if m.ClusterID != "c1" || m.Shards != 2 || len(m.Parts) != 3 || m.Parts[1].Index != 101 ||
		m.Parts[1].Size != int64(backupChunk*2+5) || m.Counts.Users != 2 {
		t.Fatalf("manifest %+v", m)
	}
}

func TestBackup_SkippedPartsAreStillChecked(t *testing.T) {
	file := testBackup(t, 1000, 1000)
	file[backupHeader+5+4+10] ^= 1 // inside part 0's first chunk
	if _, err := VerifyBackup(bytes.NewReader(file)); !errors.Is(err, ErrBackupCorrupt) {
		t.Fatalf("got %v, want ErrBackupCorrupt", err)
	}
}

// TestBackup_EveryFlippedByteIsRefused flips each byte of a small backup
// in turn: each copy must be refused.
func TestBackup_EveryFlippedByteIsRefused(t *testing.T) {
	file := testBackup(t, 40, 3)
	for i := range file {
		bad := bytes.Clone(file)
		bad[i] ^= 0x10
		if _, err := VerifyBackup(bytes.NewReader(bad)); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
}

func TestBackup_EveryTruncationIsRefused(t *testing.T) {
	file := testBackup(t, 40, 3)
	for n := range file {
		_, err := VerifyBackup(bytes.NewReader(file[:n]))
		if !errors.Is(err, ErrBackupTruncated) && !errors.Is(err, ErrBackupFormat) {
			t.Fatalf("cut at %d of %d: got %v, want ErrBackupTruncated", n, len(file), err)
		}
	}
}

func TestBackup_UnknownVersion(t *testing.T) {
	file := testBackup(t, 4, 4)
	binary.BigEndian.PutUint32(file[len(backupMagic):], BackupFormat+1)
	if _, err := VerifyBackup(bytes.NewReader(file)); !errors.Is(err, ErrBackupVersion) {
		t.Fatalf("got %v, want ErrBackupVersion", err)
	}
}

func TestBackup_OversizedLengthsRefusedBeforeAllocating(t *testing.T) {
	head := binary.BigEndian.AppendUint32([]byte(backupMagic), BackupFormat)
	chunk := binary.BigEndian.AppendUint32(append(bytes.Clone(head), tagPart, 0, 0, 0, 0),
		MaxBackupChunk+1)
	manifest := binary.BigEndian.AppendUint32(append(bytes.Clone(head), tagManifest),
		MaxManifest+1)
	for name, file := range map[string][]byte{"chunk": chunk, "manifest": manifest} {
		if _, err := VerifyBackup(bytes.NewReader(file)); !errors.Is(err, ErrBackupCorrupt) {
			t.Errorf("%s: got %v, want ErrBackupCorrupt", name, err)
		}
	}
}

// FuzzBackupReader feeds arbitrary bytes to the reader: it must return an
// error or a manifest, never panic or allocate without bound.
func FuzzBackupReader(f *testing.F) {
	f.Add(testBackup(f, 5, 7))
	f.Add(testBackup(f, 0, 0, 1))
	f.Add([]byte(backupMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := VerifyBackup(bytes.NewReader(b))
		if err == nil && (m == nil || len(m.Parts) != m.Shards+1) {
			t.Fatalf("accepted with manifest %+v", m)
		}
	})
}
