// Package httpbody reads HTTP bodies whole, sized up front when their length is
// known: io.ReadAll starts at 512 bytes and doubles, copying a 100 KB
// batch about eight times on the way.
package httpbody

import "io"

// Read reads r to its end, as io.ReadAll does. size is the body's
// announced length (an HTTP Content-Length; 0 or negative when unknown)
// and only sizes the buffer: a wrong one costs a copy, not a wrong result.
// Limit r itself.
func Read(r io.Reader, size int64) ([]byte, error) {
	const most = 8 << 20 // trust an announced length this far
	// One byte more, so that the read that finds the end needs no room.
	buf := make([]byte, 0, min(max(size, 511), most)+1)
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // room to grow, as append sizes it
		}
	}
}
