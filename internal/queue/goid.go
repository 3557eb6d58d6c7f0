package queue

import (
	"bytes"
	"runtime"
)

// goid returns the id of the calling goroutine, or 0 if it cannot be read.
// The queue uses it only to recognise a Close called from inside run, which
// must not wait for its own worker; it is read once per worker and once per
// Close, never per job.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	// b starts with "goroutine 123 [".
	var id uint64
	for _, c := range bytes.TrimPrefix(b, []byte("goroutine ")) {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
