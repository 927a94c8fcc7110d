//go:build !unix

package bus

// freeBytes cannot tell on this platform; the write probe still can.
func freeBytes(string) (uint64, bool) { return 0, false }
