package main

// Framing and frame catalogue of spec/PROTOCOL.md §3 and §4, and the HELLO validation order of
// §5.3. Pure functions: bytes in, values or a protocol error out.

import (
	"encoding/binary"
	"fmt"
	"math/big"
)

// Frame types (§3).
const (
	typeHello   = 0x01
	typeWelcome = 0x02
	typeData    = 0x03
	typeFinal   = 0x04
	typeError   = 0x05
)

const (
	headerSize     = 3
	maxPayload     = 16384
	maxMessage     = 1024 // ERROR message bytes (§4.4)
	protoVersion   = 1
	modeStateless  = 1
	modeStateful   = 2
	flagResume     = 0x01
	helloCommon    = 11
	helloStateless = 15
	helloStateful  = 47
	maxN           = 65535
	clientIDLen    = 36
)

// Code is an ERROR code of §12.1.
type Code uint16

const (
	MalformedFrame     Code = 1
	FrameTooLarge      Code = 2
	UnexpectedFrame    Code = 3
	UnsupportedVersion Code = 4
	UnsupportedMode    Code = 5
	InvalidN           Code = 6
	InvalidA           Code = 7
	InvalidIndex       Code = 8
	InvalidClientID    Code = 9
	HandshakeTimeout   Code = 10
	SessionUnknown     Code = 20
	SessionMismatch    Code = 21
	SessionSuperseded  Code = 22
	StoreUnavailable   Code = 30
	ServerBusy         Code = 31
	ShuttingDown       Code = 32
	InternalError      Code = 33
)

var codeNames = map[Code]string{
	MalformedFrame: "MALFORMED_FRAME", FrameTooLarge: "FRAME_TOO_LARGE",
	UnexpectedFrame: "UNEXPECTED_FRAME", UnsupportedVersion: "UNSUPPORTED_VERSION",
	UnsupportedMode: "UNSUPPORTED_MODE", InvalidN: "INVALID_N", InvalidA: "INVALID_A",
	InvalidIndex: "INVALID_INDEX", InvalidClientID: "INVALID_CLIENT_ID",
	HandshakeTimeout: "HANDSHAKE_TIMEOUT", SessionUnknown: "SESSION_UNKNOWN",
	SessionMismatch: "SESSION_MISMATCH", SessionSuperseded: "SESSION_SUPERSEDED",
	StoreUnavailable: "STORE_UNAVAILABLE", ServerBusy: "SERVER_BUSY",
	ShuttingDown: "SHUTTING_DOWN", InternalError: "INTERNAL_ERROR",
}

func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("ERROR_%d", uint16(c))
}

// ProtocolError is a failed check: the code goes on the wire in an ERROR frame, the message is
// for humans (§4.4: at most 1024 bytes of UTF-8).
type ProtocolError struct {
	Code    Code
	Message string
}

func (e *ProtocolError) Error() string { return e.Code.String() + ": " + e.Message }

func perr(code Code, format string, args ...interface{}) *ProtocolError {
	return &ProtocolError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Hello is a decoded, validated HELLO (§4.1).
type Hello struct {
	Mode      byte
	Resume    bool
	N         uint32
	NextIndex uint32
	A         uint32 // stateless only
	ClientID  string // stateful only
}

// HelloState is the outcome of feeding the bytes received so far to parseHello.
type HelloState int

const (
	helloNeedMore HelloState = iota // no complete HELLO yet, nothing wrong so far
	helloDone                       // a valid HELLO, nothing after it
	helloFailed                     // a check of §3 or §5.3 failed
)

// parseHello applies §3's receiving rules and §5.3's steps 1–14 to buf, the bytes a server has
// received on a connection so far; eof says the peer closed after them. It returns helloNeedMore
// (wait for more bytes), helloDone with the HELLO, or helloFailed with the first failing check.
// EOF with no byte at all is helloNeedMore with eof: the caller just closes.
func parseHello(buf []byte, eof bool) (HelloState, *Hello, *ProtocolError) {
	if len(buf) == 0 {
		return helloNeedMore, nil, nil
	}
	// Step 1: a type is known as soon as its byte is in (§3 rule 1 allows this early rejection).
	t := buf[0]
	if t < typeHello || t > typeError {
		return helloFailed, nil, perr(MalformedFrame, "unknown frame type 0x%02x", t)
	}
	if len(buf) < headerSize {
		if eof {
			return helloFailed, nil, perr(MalformedFrame, "connection closed inside a frame header")
		}
		return helloNeedMore, nil, nil
	}
	length := int(binary.BigEndian.Uint16(buf[1:3]))
	if length > maxPayload {
		return helloFailed, nil, perr(FrameTooLarge, "payload length %d exceeds %d", length, maxPayload)
	}
	if len(buf) < headerSize+length {
		if eof {
			return helloFailed, nil, perr(MalformedFrame, "connection closed inside a frame")
		}
		return helloNeedMore, nil, nil
	}
	// Step 2.
	if t != typeHello {
		return helloFailed, nil, perr(UnexpectedFrame, "expected HELLO, got frame type 0x%02x", t)
	}
	p := buf[headerSize : headerSize+length]
	h, e := validateHello(p)
	if e != nil {
		return helloFailed, nil, e
	}
	// Step 14: anything already received after the HELLO.
	if len(buf) > headerSize+length {
		return helloFailed, nil, perr(UnexpectedFrame, "%d byte(s) after the HELLO", len(buf)-headerSize-length)
	}
	return helloDone, h, nil
}

// validateHello is §5.3 steps 3–13 on a HELLO payload.
func validateHello(p []byte) (*Hello, *ProtocolError) {
	if len(p) == 0 { // 3
		return nil, perr(MalformedFrame, "empty HELLO payload")
	}
	if p[0] != protoVersion { // 4
		return nil, perr(UnsupportedVersion, "protocol version %d not supported (this server speaks 1)", p[0])
	}
	if len(p) < helloCommon { // 5
		return nil, perr(MalformedFrame, "HELLO payload of %d bytes, shorter than 11", len(p))
	}
	mode, flags := p[1], p[2]
	if mode != modeStateless && mode != modeStateful { // 6
		return nil, perr(UnsupportedMode, "mode %d is not 1 (stateless) or 2 (stateful)", mode)
	}
	if flags&^flagResume != 0 { // 7
		return nil, perr(MalformedFrame, "reserved HELLO flag bits set: 0x%02x", flags)
	}
	want := helloStateless
	if mode == modeStateful {
		want = helloStateful
	}
	if len(p) != want { // 8
		return nil, perr(MalformedFrame, "HELLO payload of %d bytes; mode %d needs %d", len(p), mode, want)
	}
	h := &Hello{Mode: mode, Resume: flags&flagResume != 0}
	h.N = binary.BigEndian.Uint32(p[3:7])
	h.NextIndex = binary.BigEndian.Uint32(p[7:11])
	if h.N < 1 || h.N > maxN { // 9
		return nil, perr(InvalidN, "n = %d is outside 1..65535", h.N)
	}
	if h.NextIndex >= h.N { // 10
		return nil, perr(InvalidIndex, "next_index %d is not below n = %d", h.NextIndex, h.N)
	}
	if !h.Resume && h.NextIndex != 0 { // 11
		return nil, perr(InvalidIndex, "next_index %d without RESUME", h.NextIndex)
	}
	if mode == modeStateless { // 12
		h.A = binary.BigEndian.Uint32(p[11:15])
		if h.Resume && (h.A < 1 || h.A > 255) {
			return nil, perr(InvalidA, "a = %d on a RESUME is outside 1..255", h.A)
		}
		if !h.Resume && h.A != 0 {
			return nil, perr(InvalidA, "a = %d on a new stream; must be 0", h.A)
		}
		return h, nil
	}
	id := p[11:47] // 13
	if !validClientID(id) {
		return nil, perr(InvalidClientID, "client id is not a lower-case canonical UUID")
	}
	h.ClientID = string(id)
	return h, nil
}

// validClientID: 36 bytes, '-' at 8, 13, 18, 23, lower-case hex elsewhere (§4.1).
func validClientID(id []byte) bool {
	if len(id) != clientIDLen {
		return false
	}
	for i, c := range id {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// appendHeader appends a frame header.
func appendHeader(dst []byte, t byte, length int) []byte {
	return append(dst, t, byte(length>>8), byte(length))
}

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Welcome holds the fields of a WELCOME (§4.2).
type Welcome struct {
	Mode         byte
	N, NextIndex uint32
	IntervalMs   uint32
	A            uint32
	SessionTTLMs uint32
}

func appendWelcome(dst []byte, w Welcome) []byte {
	dst = appendHeader(dst, typeWelcome, 23)
	dst = append(dst, protoVersion, w.Mode, 0)
	dst = appendU32(dst, w.N)
	dst = appendU32(dst, w.NextIndex)
	dst = appendU32(dst, w.IntervalMs)
	dst = appendU32(dst, w.A)
	return appendU32(dst, w.SessionTTLMs)
}

// appendStatefulNumber appends a stateful DATA, or the FINAL when checksum is not nil (§4.3).
func appendStatefulNumber(dst []byte, index, value uint32, checksum []byte) []byte {
	if checksum == nil {
		dst = appendHeader(dst, typeData, 8)
	} else {
		dst = appendHeader(dst, typeFinal, 40)
	}
	dst = appendU32(dst, index)
	dst = appendU32(dst, value)
	return append(dst, checksum...)
}

// statelessValueLen is L = ⌈(bitlen(a) + index) / 8⌉ (§6.2), for 1 ≤ a ≤ 255.
func statelessValueLen(a uint32, index uint32) int {
	bits := 0
	for v := a; v != 0; v >>= 1 {
		bits++
	}
	return (bits + int(index) + 7) / 8
}

// appendStatelessNumber appends DATA (or FINAL when final) carrying a·2^index as its minimal
// big-endian magnitude (§4.3, §6.2). scratch is reused between calls to avoid allocation.
func appendStatelessNumber(dst []byte, final bool, index uint32, a *big.Int, scratch *big.Int) []byte {
	scratch.Lsh(a, uint(index))
	l := (scratch.BitLen() + 7) / 8
	t := byte(typeData)
	if final {
		t = typeFinal
	}
	dst = appendHeader(dst, t, 4+l)
	dst = appendU32(dst, index)
	start := len(dst)
	if cap(dst)-start < l {
		grown := make([]byte, start, start+l)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+l]
	scratch.FillBytes(dst[start:]) // zero-extends: writes all l bytes
	return dst
}

// appendError appends an ERROR frame; the message is cut to 1024 bytes on a UTF-8 boundary.
func appendError(dst []byte, code Code, message string) []byte {
	m := truncateUTF8(message, maxMessage)
	dst = appendHeader(dst, typeError, 2+len(m))
	dst = append(dst, byte(code>>8), byte(code))
	return append(dst, m...)
}

func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xc0 == 0x80 { // back off a continuation byte
		cut--
	}
	return s[:cut]
}
