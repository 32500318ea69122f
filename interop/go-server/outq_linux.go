//go:build linux

package main

import (
	"net"
	"syscall"
	"unsafe"
)

// unacked returns how many bytes written on c the peer's TCP has not acknowledged yet
// (ioctl SIOCOUTQ, which is TIOCOUTQ on Linux), and false when that cannot be observed.
func unacked(c net.Conn) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int32
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return 0, false
	}
	return int(n), true
}
