package rtmp

import "encoding/binary"

// chunker frames RTMP messages for one connection without copying their
// bodies: headers go into its own buffer, bodies are referenced, and the
// whole batch leaves in one writev. Every message starts with a type-0
// header (absolute timestamp), which costs a few bytes and no state.
type chunker struct {
	chunkSize int    // what gortmplib's Accept announced
	hdr       []byte // header bytes of the current batch
}

// appendMessage appends the chunks of one message to bufs. Its body is
// pre then body (pre is a retimed tag's own first bytes, or nil).
func (c *chunker) appendMessage(bufs [][]byte, csid, typ byte, streamID, ts uint32, pre, body []byte) [][]byte {
	ext := ts >= 0xFFFFFF
	start := len(c.hdr)
	c.hdr = append(c.hdr, csid&0x3F) // fmt 0
	t24 := min(ts, 0xFFFFFF)
	n := len(pre) + len(body)
	c.hdr = append(c.hdr, byte(t24>>16), byte(t24>>8), byte(t24), byte(n>>16), byte(n>>8), byte(n), typ)
	c.hdr = binary.LittleEndian.AppendUint32(c.hdr, streamID)
	if ext {
		c.hdr = binary.BigEndian.AppendUint32(c.hdr, ts)
	}
	left := c.chunkSize // room in the current chunk
	if len(pre) > 0 && len(pre) <= maxInlinePre {
		// A few bytes (a retimed video tag's composition time): copied
		// after the header, one buffer fewer to keep and to write.
		c.hdr = append(c.hdr, pre...)
		left -= len(pre)
		pre = nil
	}
	bufs = append(bufs, c.hdr[start:len(c.hdr):len(c.hdr)])
	if len(pre)+len(body) <= left { // the rest fits the first chunk: most messages
		if len(pre) > 0 {
			bufs = append(bufs, pre)
		}
		if len(body) > 0 {
			bufs = append(bufs, body)
		}
		return bufs
	}
	for _, part := range [2][]byte{pre, body} {
		for len(part) > 0 {
			if left == 0 {
				// A type-3 header before each further chunk; it repeats
				// the extended timestamp, as librtmp, OBS and gortmplib
				// expect.
				start = len(c.hdr)
				c.hdr = append(c.hdr, 0xC0|csid&0x3F)
				if ext {
					c.hdr = binary.BigEndian.AppendUint32(c.hdr, ts)
				}
				bufs = append(bufs, c.hdr[start:len(c.hdr):len(c.hdr)])
				left = c.chunkSize
			}
			k := min(left, len(part))
			bufs = append(bufs, part[:k])
			part, left = part[k:], left-k
		}
	}
	return bufs
}

// reset forgets the headers of the batch just written. A buffer grown
// for a large batch (a joining player's cached GOP) is let go: a live
// batch needs a few dozen bytes, and a thousand players keep theirs.
func (c *chunker) reset() {
	if cap(c.hdr) > maxKeptHeaderBytes {
		c.hdr = nil
	}
	c.hdr = c.hdr[:0]
}

// maxInlinePre is the longest first body part a message header takes in.
const maxInlinePre = 16

// maxKeptHeaderBytes is the header buffer a chunker keeps between batches.
const maxKeptHeaderBytes = 512
