//go:build unix

package bus

import "syscall"

// freeBytes is the space an unprivileged writer has left on dir's file
// system; ok is false when it cannot be read.
func freeBytes(dir string) (free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true //nolint:unconvert // the field types differ by platform
}
