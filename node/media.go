package node

import (
	"bytes"
	"context"
	"image"
	"image/color"
	_ "image/gif" // registers GIF for image.Decode
	"image/jpeg"
	_ "image/png" // registers PNG for image.Decode
	"io"

	"github.com/gabriel-vasile/mimetype"
	xdraw "golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP for image.Decode
	"golang.org/x/sync/semaphore"

	"github.com/schat/schat/fsm"
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

// Thumbnail bounds. Making a thumbnail decodes the whole image, so
// decoding is bounded twice: an image with more than maxThumbPixels, or
// whose decoding would take more than decodeBudget bytes, gets no
// thumbnail, and the decodes running at once on a node share decodeBudget,
// waiting for each other beyond it. A thumbnail is a JPEG of at most
// thumbSide pixels a side and fsm.MaxThumbnail bytes, encoded at lower
// qualities in turn until it fits.
const (
	thumbSide      = 128
	maxThumbPixels = 24 << 20
	decodeBudget   = 128 << 20
)

// thumbQualities are the JPEG qualities a thumbnail is tried at.
var thumbQualities = []int{70, 50, 30}

// decodeCost is how many bytes decoding an image of cfg in format takes
// at most, near enough: the decoded pixels, and for JPEG the coefficients
// a progressive image keeps besides.
func decodeCost(cfg image.Config, format string) int64 {
	perPixel := int64(4)
	switch {
	case format == "jpeg":
		perPixel = 9 // YCbCr or CMYK samples plus 16-bit coefficients
	case format == "gif" || cfg.ColorModel == color.GrayModel:
		perPixel = 1
	case cfg.ColorModel == color.RGBA64Model || cfg.ColorModel == color.NRGBA64Model:
		perPixel = 8
	}
	return int64(cfg.Width) * int64(cfg.Height) * perPixel
}

// describeImage reads an image's dimensions and makes its thumbnail,
// decoding only within the bounds above; decodes takes the bytes decoding
// needs, waiting while ctx allows. Content that does not decode gets
// neither dimensions nor thumbnail; it is still stored, as its type says.
func describeImage(ctx context.Context, decodes *semaphore.Weighted,
	r io.ReadSeeker) (w, h uint32, thumb []byte) {
	cfg, format, err := image.DecodeConfig(r)
	if err != nil || cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, nil
	}
	w, h = uint32(cfg.Width), uint32(cfg.Height)
	cost := decodeCost(cfg, format)
	if int64(cfg.Width)*int64(cfg.Height) > maxThumbPixels || cost > decodeBudget {
		return w, h, nil
	}
	if err := decodes.Acquire(ctx, cost); err != nil {
		return w, h, nil
	}
	defer decodes.Release(cost)
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return w, h, nil
	}
	src, _, err := image.Decode(r)
	if err != nil {
		return w, h, nil
	}
	return w, h, thumbnail(src)
}

// thumbnail scales src down to fit thumbSide and encodes it as JPEG at the
// first quality that fits fsm.MaxThumbnail; nil if none does.
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
	for _, q := range thumbQualities {
		buf.Reset()
		if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: q}); err != nil {
			return nil
		}
		if buf.Len() <= fsm.MaxThumbnail {
			return buf.Bytes()
		}
	}
	return nil
}
