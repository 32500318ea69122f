package main

// The PRNG of spec/PROTOCOL.md §8 (SplitMix64 in counter form) and the checksum of §9.

import (
	"crypto/sha256"
	"encoding/binary"
)

const (
	splitmixGamma = 0x9e3779b97f4a7c15
	splitmixM1    = 0xbf58476d1ce4e5b9
	splitmixM2    = 0x94d049bb133111eb
)

// prngOutput is output(seed, i) = mix(seed + (i+1)·GAMMA mod 2^64) (§8.1); uint64 wraps.
func prngOutput(seed, i uint64) uint64 {
	z := seed + (i+1)*splitmixGamma
	z = (z ^ (z >> 30)) * splitmixM1
	z = (z ^ (z >> 27)) * splitmixM2
	return z ^ (z >> 31)
}

// element is the number at index i of a stateful session: the high 32 bits of output(seed, i).
func element(seed uint64, i uint32) uint32 {
	return uint32(prngOutput(seed, uint64(i)) >> 32)
}

// sessionChecksum is SHA-256 over be32(element(seed, 0)) … be32(element(seed, n−1)) (§9).
// At most 65,535 values: about a millisecond, so it is computed whole when a connection starts.
func sessionChecksum(seed uint64, n uint32) [32]byte {
	h := sha256.New()
	var chunk [4 * 1024]byte
	fill := 0
	for i := uint32(0); i < n; i++ {
		binary.BigEndian.PutUint32(chunk[fill:], element(seed, i))
		fill += 4
		if fill == len(chunk) {
			h.Write(chunk[:])
			fill = 0
		}
	}
	h.Write(chunk[:fill])
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
