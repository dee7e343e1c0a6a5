package node

import (
	"bytes"
	"image"
	_ "image/gif" // registers GIF for image.Decode
	"image/jpeg"
	_ "image/png" // registers PNG for image.Decode
	"io"

	"github.com/gabriel-vasile/mimetype"
	xdraw "golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP for image.Decode

	pb "github.com/schat/schat/proto"
)

// sniffLen is how many leading bytes type detection looks at.
const sniffLen = 3072

// fileType is what an upload's content was detected to be.
type fileType struct {
	kind pb.FileKind
	mime string // the Content-Type it is served with
}

// genericType is every content outside the allow-list: served as opaque
// bytes, never labelled image, voice or video.
var genericType = fileType{pb.FileKind_FILE_KIND_GENERIC, "application/octet-stream"}

// allowedTypes is the allow-list, by the MIME type mimetype detects.
var allowedTypes = []struct {
	detected string
	fileType
}{
	{"image/jpeg", fileType{pb.FileKind_FILE_KIND_IMAGE, "image/jpeg"}},
	{"image/png", fileType{pb.FileKind_FILE_KIND_IMAGE, "image/png"}},
	{"image/gif", fileType{pb.FileKind_FILE_KIND_IMAGE, "image/gif"}},
	{"image/webp", fileType{pb.FileKind_FILE_KIND_IMAGE, "image/webp"}},
	{"video/mp4", fileType{pb.FileKind_FILE_KIND_VIDEO, "video/mp4"}},
	{"video/webm", fileType{pb.FileKind_FILE_KIND_VIDEO, "video/webm"}},
	{"audio/amr", fileType{pb.FileKind_FILE_KIND_VOICE, "audio/amr"}},
	{"audio/x-m4a", fileType{pb.FileKind_FILE_KIND_VOICE, "audio/mp4"}},
	{"audio/ogg", fileType{pb.FileKind_FILE_KIND_VOICE, "audio/ogg"}},
}

// detectType classifies content by its first bytes. mimetype knows the
// container details (ftyp brands that tell M4A from MP4, the Matroska
// doctype that tells WebM from MKV); an Ogg stream counts as voice only
// when it carries Opus.
func detectType(head []byte) fileType {
	m := mimetype.Detect(head)
	for _, t := range allowedTypes {
		if !m.Is(t.detected) {
			continue
		}
		if t.detected == "audio/ogg" && !isOggOpus(head) {
			return genericType
		}
		return t.fileType
	}
	return genericType
}

// isOggOpus reports whether an Ogg stream's first packet is an Opus
// identification header.
func isOggOpus(head []byte) bool {
	return len(head) >= 36 && bytes.HasPrefix(head, []byte("OggS")) &&
		bytes.HasPrefix(head[28:], []byte("OpusHead"))
}

// Thumbnail bounds. Images with more pixels than maxThumbSource keep
// their dimensions but get no thumbnail: decoding them would cost more
// memory than an upload may.
const (
	thumbSide      = 128
	thumbQuality   = 70
	maxThumbSource = 16 << 20
)

// describeImage reads an image's dimensions and makes its thumbnail, a
// JPEG at most thumbSide on its longer side. Content that does not decode
// gets neither; it is still stored, as its type says.
func describeImage(r io.ReadSeeker) (w, h uint32, thumb []byte) {
	cfg, _, err := image.DecodeConfig(r)
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, nil
	}
	w, h = uint32(cfg.Width), uint32(cfg.Height)
	if cfg.Width*cfg.Height > maxThumbSource {
		return w, h, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return w, h, nil
	}
	src, _, err := image.Decode(r)
	if err != nil {
		return w, h, nil
	}
	return w, h, thumbnail(src)
}

// thumbnail scales src down to fit thumbSide and encodes it as JPEG; nil
// if it comes out larger than a thumbnail may be.
func thumbnail(src image.Image) []byte {
	b := src.Bounds()
	tw, th := thumbSide, thumbSide
	if b.Dx() > b.Dy() {
		th = max(1, b.Dy()*thumbSide/b.Dx())
	} else {
		tw = max(1, b.Dx()*thumbSide/b.Dy())
	}
	if b.Dx() <= tw && b.Dy() <= th {
		tw, th = b.Dx(), b.Dy()
	}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	xdraw.ApproxBiLinear.Scale(dst, dst.Bounds(), src, b, xdraw.Src, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: thumbQuality}); err != nil {
		return nil
	}
	if buf.Len() > maxThumbBytes {
		return nil
	}
	return buf.Bytes()
}
