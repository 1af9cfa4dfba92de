package record

// A small reader of the fMP4 segments the recorder writes, for the
// recovery of segments a crash left unindexed and for /get. It reads the
// top-level boxes one by one (mdat payloads are skipped, never loaded),
// keeps the sample tables of each complete fragment and stops at the first
// box that is cut short or makes no sense: what comes before it plays.
//
//	ftyp moov free(meta) [moof mdat]...
//
// Files on disk can be changed under the index, so everything here is
// checked as if it came from a peer (FuzzScan).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// metaMagic starts the payload of the free box that carries a segment's
// start time and stream path. Players skip free boxes.
const metaMagic = "SHREC001"

// Bounds of what scan accepts, so that a damaged file cannot use up memory.
const (
	maxMoovSize      = 4 << 20
	maxMoofSize      = 8 << 20
	maxSamplesPerRun = 1 << 18
	maxTracks        = 16
)

// errBadFile is returned for a file that is not a recording segment.
var errBadFile = errors.New("record: not a segment this server wrote")

// fileInfo is what scan found in a segment.
type fileInfo struct {
	initEnd    int64 // the init (ftyp+moov) is [0, initEnd)
	mvhdDurOff int64 // file offset of mvhd's 32-bit duration (0: none)
	start      time.Time
	path       string
	tracks     []trackInfo
	frags      []frag
	end        int64 // end of the last complete fragment (or of the header)
}

type trackInfo struct {
	id        uint32
	timescale uint32
	video     bool
	codec     string // as media.Codec names it ("H264"), from the sample entry
}

// sampleEntryCodecs maps sample entry types to codec names.
var sampleEntryCodecs = map[string]string{"avc1": "H264", "avc3": "H264", "hvc1": "H265", "hev1": "H265", "mp4a": "AAC", "Opus": "Opus"}

// frag is one complete moof+mdat.
type frag struct {
	off, size int64
	tracks    []fragTrack
}

type fragTrack struct {
	id      uint32
	base    uint64 // tfdt
	samples []sample
}

type sample struct {
	off  int64
	size uint32
	dur  uint32
	cto  int32
	sync bool
}

// track returns the track with id, nil if none.
func (fi *fileInfo) track(id uint32) *trackInfo {
	for i := range fi.tracks {
		if fi.tracks[i].id == id {
			return &fi.tracks[i]
		}
	}
	return nil
}

// duration returns the media time the complete fragments cover: the
// longest track's end.
func (fi *fileInfo) duration() time.Duration {
	var d time.Duration
	for _, f := range fi.frags {
		for _, ft := range f.tracks {
			ti := fi.track(ft.id)
			if ti == nil || ti.timescale == 0 {
				continue
			}
			end := ft.base
			for _, s := range ft.samples {
				end += uint64(s.dur)
			}
			d = max(d, tsToDur(end, ti.timescale))
		}
	}
	return d
}

// tsToDur converts a time in timescale units to a duration without
// overflow for any uint64 a file may hold (saturating).
func tsToDur(v uint64, timescale uint32) time.Duration {
	ts := uint64(timescale)
	secs := v / ts
	if secs > uint64(1<<63-1)/uint64(time.Second)-1 {
		return 1<<63 - 1
	}
	return time.Duration(secs)*time.Second + time.Duration((v%ts)*uint64(time.Second)/ts)
}

type boxHdr struct {
	typ        string
	off, size  int64 // whole box
	hdrLen     int64
	payloadOff int64
}

// readHdr reads the box header at off; ok is false at the end of the file
// or for a box that does not fit in it.
func readHdr(r io.ReaderAt, off, fileSize int64) (boxHdr, bool) {
	var b [16]byte
	if off+8 > fileSize {
		return boxHdr{}, false
	}
	if _, err := r.ReadAt(b[:8], off); err != nil {
		return boxHdr{}, false
	}
	h := boxHdr{typ: string(b[4:8]), off: off, size: int64(binary.BigEndian.Uint32(b[:4])), hdrLen: 8}
	switch h.size {
	case 0:
		return boxHdr{}, false // "to the end of the file": we never write one
	case 1:
		if off+16 > fileSize {
			return boxHdr{}, false
		}
		if _, err := r.ReadAt(b[8:16], off+8); err != nil {
			return boxHdr{}, false
		}
		s := binary.BigEndian.Uint64(b[8:16])
		if s > 1<<62 {
			return boxHdr{}, false
		}
		h.size, h.hdrLen = int64(s), 16
	}
	if h.size < h.hdrLen || h.size > fileSize-off {
		return boxHdr{}, false
	}
	h.payloadOff = off + h.hdrLen
	return h, true
}

// scan reads a segment of fileSize bytes. It fails when the header (ftyp,
// moov, the meta box) is not complete and valid; a damaged fragment only
// ends the list of fragments.
func scan(r io.ReaderAt, fileSize int64) (*fileInfo, error) {
	fi := &fileInfo{}
	off := int64(0)
	h, ok := readHdr(r, off, fileSize)
	if !ok || h.typ != "ftyp" {
		return nil, fmt.Errorf("%w: no ftyp box", errBadFile)
	}
	off += h.size
	h, ok = readHdr(r, off, fileSize)
	if !ok || h.typ != "moov" || h.size > maxMoovSize {
		return nil, fmt.Errorf("%w: no complete moov box", errBadFile)
	}
	moov := make([]byte, h.size-h.hdrLen)
	if _, err := r.ReadAt(moov, h.payloadOff); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadFile, err)
	}
	if err := fi.parseMoov(moov, h.payloadOff); err != nil {
		return nil, err
	}
	off += h.size
	fi.initEnd = off
	h, ok = readHdr(r, off, fileSize)
	if !ok || h.typ != "free" || h.size-h.hdrLen > 1024 {
		return nil, fmt.Errorf("%w: no meta box", errBadFile)
	}
	meta := make([]byte, h.size-h.hdrLen)
	if _, err := r.ReadAt(meta, h.payloadOff); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadFile, err)
	}
	if err := fi.parseMeta(meta); err != nil {
		return nil, err
	}
	off += h.size
	fi.end = off
	fi.scanFrags(r, fileSize)
	return fi, nil
}

// scanFrags reads the fragments from fi.end on (a file that grew since
// the last scan goes on where it stopped) and appends the complete ones.
func (fi *fileInfo) scanFrags(r io.ReaderAt, fileSize int64) {
	off := fi.end
	for {
		moofH, ok := readHdr(r, off, fileSize)
		if !ok || moofH.typ != "moof" || moofH.size > maxMoofSize {
			return
		}
		mdatH, ok := readHdr(r, off+moofH.size, fileSize)
		if !ok || mdatH.typ != "mdat" {
			return // the fragment a crash cut short, or one being written
		}
		moof := make([]byte, moofH.size-moofH.hdrLen)
		if _, err := r.ReadAt(moof, moofH.payloadOff); err != nil {
			return
		}
		f, err := parseMoof(moof, moofH.off)
		if err != nil || !f.within(mdatH.payloadOff, mdatH.off+mdatH.size) || !fi.knows(f) {
			return
		}
		f.off, f.size = moofH.off, moofH.size+mdatH.size
		fi.frags = append(fi.frags, f)
		off += f.size
		fi.end = off
	}
}

func (fi *fileInfo) parseMeta(b []byte) error {
	if len(b) < 18 || string(b[:8]) != metaMagic {
		return fmt.Errorf("%w: no meta box", errBadFile)
	}
	ns := int64(binary.BigEndian.Uint64(b[8:16]))
	n := int(binary.BigEndian.Uint16(b[16:18]))
	if len(b) < 18+n {
		return fmt.Errorf("%w: short meta box", errBadFile)
	}
	fi.start = time.Unix(0, ns).UTC()
	fi.path = string(b[18 : 18+n])
	return nil
}

// mvhdDurOffset returns the offset of mvhd's 32-bit duration in an init
// (ftyp+moov), 0 if it has none.
func mvhdDurOffset(hdr []byte) int64 {
	r := bytes.NewReader(hdr)
	h, ok := readHdr(r, 0, int64(len(hdr)))
	if !ok || h.typ != "ftyp" {
		return 0
	}
	m, ok := readHdr(r, h.size, int64(len(hdr)))
	if !ok || m.typ != "moov" {
		return 0
	}
	var fi fileInfo
	fi.parseMoov(hdr[m.payloadOff:m.off+m.size], m.payloadOff) //nolint:errcheck // the offset is all we need
	return fi.mvhdDurOff
}

// marshalMeta returns the free box that carries start and path.
func marshalMeta(start time.Time, path string) []byte {
	b := make([]byte, 8, 8+8+8+2+len(path))
	b = append(b, metaMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(start.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(path)))
	b = append(b, path...)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)))
	copy(b[4:8], "free")
	return b
}

// children calls fn for each box inside b (a box payload that starts at
// file offset base); it stops at the first that does not fit.
func children(b []byte, base int64, fn func(typ string, payload []byte, payloadOff int64) error) error {
	for len(b) >= 8 {
		size := int64(binary.BigEndian.Uint32(b[:4]))
		typ := string(b[4:8])
		hl := int64(8)
		if size == 1 {
			if len(b) < 16 {
				return fmt.Errorf("%w: short box", errBadFile)
			}
			s := binary.BigEndian.Uint64(b[8:16])
			if s > uint64(len(b)) {
				return fmt.Errorf("%w: box %q past its parent", errBadFile, typ)
			}
			size, hl = int64(s), 16
		}
		if size < hl || size > int64(len(b)) {
			return fmt.Errorf("%w: box %q past its parent", errBadFile, typ)
		}
		if err := fn(typ, b[hl:size], base+hl); err != nil {
			return err
		}
		b, base = b[size:], base+size
	}
	return nil
}

func (fi *fileInfo) parseMoov(b []byte, base int64) error {
	err := children(b, base, func(typ string, p []byte, po int64) error {
		switch typ {
		case "mvhd":
			if len(p) >= 20 && p[0] == 0 {
				fi.mvhdDurOff = po + 16
			}
		case "trak":
			if len(fi.tracks) >= maxTracks {
				return fmt.Errorf("%w: too many tracks", errBadFile)
			}
			var t trackInfo
			if err := parseTrak(p, po, &t); err != nil {
				return err
			}
			if t.id == 0 || t.timescale == 0 || fi.track(t.id) != nil {
				return fmt.Errorf("%w: bad track", errBadFile)
			}
			fi.tracks = append(fi.tracks, t)
		}
		return nil
	})
	if err == nil && len(fi.tracks) == 0 {
		err = fmt.Errorf("%w: no tracks", errBadFile)
	}
	return err
}

func parseTrak(b []byte, base int64, t *trackInfo) error {
	return children(b, base, func(typ string, p []byte, po int64) error {
		switch typ {
		case "tkhd":
			switch {
			case len(p) >= 16 && p[0] == 0:
				t.id = binary.BigEndian.Uint32(p[12:16])
			case len(p) >= 24 && p[0] == 1:
				t.id = binary.BigEndian.Uint32(p[20:24])
			}
		case "mdia":
			return children(p, po, func(typ string, p []byte, _ int64) error {
				switch typ {
				case "mdhd":
					switch {
					case len(p) >= 16 && p[0] == 0:
						t.timescale = binary.BigEndian.Uint32(p[12:16])
					case len(p) >= 24 && p[0] == 1:
						t.timescale = binary.BigEndian.Uint32(p[20:24])
					}
				case "hdlr":
					if len(p) >= 12 {
						t.video = string(p[8:12]) == "vide"
					}
				case "minf":
					return children(p, 0, func(typ string, p []byte, _ int64) error {
						if typ != "stbl" {
							return nil
						}
						return children(p, 0, func(typ string, p []byte, _ int64) error {
							if typ == "stsd" && len(p) >= 16 {
								t.codec = sampleEntryCodecs[string(p[12:16])]
							}
							return nil
						})
					})
				}
				return nil
			})
		}
		return nil
	})
}

// parseMoof reads the sample tables of a moof that starts at file offset
// moofOff (sample offsets are relative to it).
func parseMoof(b []byte, moofOff int64) (frag, error) {
	var f frag
	err := children(b, moofOff+8, func(typ string, p []byte, po int64) error {
		if typ != "traf" {
			return nil
		}
		if len(f.tracks) >= maxTracks {
			return fmt.Errorf("%w: too many tracks", errBadFile)
		}
		ft, err := parseTraf(p, po, moofOff)
		if err != nil {
			return err
		}
		f.tracks = append(f.tracks, ft)
		return nil
	})
	return f, err
}

func parseTraf(b []byte, base, moofOff int64) (fragTrack, error) {
	var (
		ft                     fragTrack
		dataBase               = moofOff
		defDur, defSize, defFl uint32
		hasDefFl, haveTfhd     bool
	)
	err := children(b, base, func(typ string, p []byte, _ int64) error {
		switch typ {
		case "tfhd":
			if len(p) < 8 {
				return fmt.Errorf("%w: short tfhd", errBadFile)
			}
			flags := binary.BigEndian.Uint32(p[:4]) & 0xffffff
			ft.id = binary.BigEndian.Uint32(p[4:8])
			q := p[8:]
			take := func(n int) ([]byte, error) {
				if len(q) < n {
					return nil, fmt.Errorf("%w: short tfhd", errBadFile)
				}
				v := q[:n]
				q = q[n:]
				return v, nil
			}
			if flags&0x1 != 0 {
				v, err := take(8)
				if err != nil {
					return err
				}
				o := binary.BigEndian.Uint64(v)
				if o > 1<<62 {
					return fmt.Errorf("%w: bad base offset", errBadFile)
				}
				dataBase = int64(o)
			}
			for _, fl := range []struct {
				bit uint32
				dst *uint32
			}{{0x2, nil}, {0x8, &defDur}, {0x10, &defSize}, {0x20, &defFl}} {
				if flags&fl.bit == 0 {
					continue
				}
				v, err := take(4)
				if err != nil {
					return err
				}
				if fl.dst != nil {
					*fl.dst = binary.BigEndian.Uint32(v)
				}
				if fl.bit == 0x20 {
					hasDefFl = true
				}
			}
			haveTfhd = true
		case "tfdt":
			switch {
			case len(p) >= 8 && p[0] == 0:
				ft.base = uint64(binary.BigEndian.Uint32(p[4:8]))
			case len(p) >= 12 && p[0] == 1:
				ft.base = binary.BigEndian.Uint64(p[4:12])
			default:
				return fmt.Errorf("%w: bad tfdt", errBadFile)
			}
		case "trun":
			if !haveTfhd {
				return fmt.Errorf("%w: trun before tfhd", errBadFile)
			}
			return parseTrun(p, dataBase, defDur, defSize, defFl, hasDefFl, &ft)
		}
		return nil
	})
	return ft, err
}

func parseTrun(p []byte, dataBase int64, defDur, defSize, defFl uint32, hasDefFl bool, ft *fragTrack) error {
	if len(p) < 8 {
		return fmt.Errorf("%w: short trun", errBadFile)
	}
	flags := binary.BigEndian.Uint32(p[:4]) & 0xffffff
	version := p[0]
	n := binary.BigEndian.Uint32(p[4:8])
	q := p[8:]
	off := dataBase
	if flags&0x1 != 0 {
		if len(q) < 4 {
			return fmt.Errorf("%w: short trun", errBadFile)
		}
		off += int64(int32(binary.BigEndian.Uint32(q[:4])))
		q = q[4:]
	}
	var firstFl uint32
	hasFirst := false
	if flags&0x4 != 0 {
		if len(q) < 4 {
			return fmt.Errorf("%w: short trun", errBadFile)
		}
		firstFl, hasFirst = binary.BigEndian.Uint32(q[:4]), true
		q = q[4:]
	}
	per := 0
	for _, bit := range []uint32{0x100, 0x200, 0x400, 0x800} {
		if flags&bit != 0 {
			per += 4
		}
	}
	if n > maxSamplesPerRun || len(ft.samples)+int(n) > maxSamplesPerRun || uint64(len(q)) < uint64(n)*uint64(per) {
		return fmt.Errorf("%w: bad trun sample count", errBadFile)
	}
	for i := uint32(0); i < n; i++ {
		s := sample{off: off, dur: defDur, size: defSize, sync: true}
		fl, hasFl := defFl, hasDefFl
		if i == 0 && hasFirst {
			fl, hasFl = firstFl, true
		}
		if flags&0x100 != 0 {
			s.dur, q = binary.BigEndian.Uint32(q[:4]), q[4:]
		}
		if flags&0x200 != 0 {
			s.size, q = binary.BigEndian.Uint32(q[:4]), q[4:]
		}
		if flags&0x400 != 0 {
			fl, hasFl, q = binary.BigEndian.Uint32(q[:4]), true, q[4:]
		}
		if flags&0x800 != 0 {
			v := binary.BigEndian.Uint32(q[:4])
			q = q[4:]
			if version == 0 {
				if v > 1<<31-1 {
					return fmt.Errorf("%w: bad composition offset", errBadFile)
				}
				s.cto = int32(v)
			} else {
				s.cto = int32(v)
			}
		}
		if hasFl {
			s.sync = fl&0x10000 == 0
		}
		ft.samples = append(ft.samples, s)
		off += int64(s.size)
	}
	return nil
}

// within reports whether every sample of f lies in [lo, hi).
func (f frag) within(lo, hi int64) bool {
	for _, ft := range f.tracks {
		for _, s := range ft.samples {
			if s.off < lo || s.off+int64(s.size) > hi {
				return false
			}
		}
	}
	return true
}

// knows reports whether every track of f is one of the file's.
func (fi *fileInfo) knows(f frag) bool {
	for _, ft := range f.tracks {
		if fi.track(ft.id) == nil {
			return false
		}
	}
	return true
}
