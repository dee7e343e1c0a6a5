package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// fileSection writes a file section holding files with the given
// contents: a content named by its SHA-256 for kind 1, an upload named
// "key" plus its position for kind 2.
func fileSection(t testing.TB, kinds []byte, contents [][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i, data := range contents {
		f := SnapshotFile{Kind: kinds[i], Size: int64(len(data))}
		if f.Kind == SnapBlob {
			sum := sha256.Sum256(data)
			f.Name = sum[:]
		} else {
			f.Name = []byte{'k', 'e', 'y', byte(i)}
		}
		if err := WriteSnapshotFile(&buf, f, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := EndSnapshotFiles(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawFile is a file entry as bytes, with any kind, name and size.
func rawFile(kind byte, name []byte, size uint64, data []byte) []byte {
	b := append([]byte{kind, byte(len(name))}, name...)
	b = binary.BigEndian.AppendUint64(b, size)
	return append(b, data...)
}

func TestReadSnapshotFiles_Rejects(t *testing.T) {
	sum := make([]byte, sha256.Size)
	tests := map[string][]byte{
		"empty":                      nil,
		"no closing kind":            rawFile(SnapBlob, sum, 2, []byte("ab")),
		"unknown kind":               append(rawFile(7, sum, 0, nil), SnapEnd),
		"content not named by a sum": append(rawFile(SnapBlob, []byte("x"), 0, nil), SnapEnd),
		"upload with no name":        append(rawFile(SnapPartial, nil, 0, nil), SnapEnd),
		"size over the bound":        append(rawFile(SnapBlob, sum, 1<<62, nil), SnapEnd),
		"negative size":              append(rawFile(SnapBlob, sum, 1<<63, nil), SnapEnd),
		"bytes short of the size":    rawFile(SnapPartial, []byte("k"), 100, []byte("abc")),
		"name cut short":             {SnapBlob, 32, 1, 2, 3},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			err := ReadSnapshotFiles(bytes.NewReader(b), func(_ SnapshotFile, r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("got %v, want ErrSnapshot", err)
			}
		})
	}
}

// FuzzReadSnapshotFiles feeds hostile file sections to the reader, which
// restores take from a peer or a backup: it never panics, allocates only
// names (at most 255 bytes) before streaming, and hands out no more bytes
// than it was given. A section it writes reads back as written.
func FuzzReadSnapshotFiles(f *testing.F) {
	f.Add(fileSection(f, []byte{SnapBlob, SnapPartial}, [][]byte{[]byte("content"), []byte("up")}))
	f.Add(fileSection(f, nil, nil))
	f.Add(rawFile(SnapBlob, make([]byte, 32), 1<<40, nil))
	f.Add(rawFile(SnapPartial, bytes.Repeat([]byte{1}, 255), 3, []byte("abc\x00")))
	f.Add([]byte{SnapPartial, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		var handed int64
		err := ReadSnapshotFiles(bytes.NewReader(b), func(sf SnapshotFile, r io.Reader) error {
			if len(sf.Name) > 255 || sf.Size < 0 {
				t.Fatalf("handed out file %x of %d bytes", sf.Name, sf.Size)
			}
			n, err := io.Copy(io.Discard, r)
			handed += n
			return err
		})
		if handed > int64(len(b)) {
			t.Fatalf("handed out %d bytes from %d", handed, len(b))
		}
		if err != nil && !errors.Is(err, ErrSnapshot) {
			t.Fatalf("got %v, want nil or ErrSnapshot", err)
		}
		if len(b) == 0 {
			return
		}
		// Write the input's bytes as one upload and one content; they read
		// back as written.
		section := fileSection(t, []byte{SnapPartial, SnapBlob}, [][]byte{b, b[:len(b)/2]})
		var got [][]byte
		err = ReadSnapshotFiles(bytes.NewReader(section), func(_ SnapshotFile, r io.Reader) error {
			data, err := io.ReadAll(r)
			got = append(got, data)
			return err
		})
		if err != nil || len(got) != 2 || !bytes.Equal(got[0], b) ||
			!bytes.Equal(got[1], b[:len(b)/2]) {
			t.Fatalf("round trip: got %d files, err %v", len(got), err)
		}
	})
}
