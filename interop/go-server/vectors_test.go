package main

// Table-driven tests over spec/vectors/: every case of prng.json, checksum.json,
// stateless_sums.json, frames.json and the server-side cases of invalid_frames.json.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var vectorsDir = filepath.Join("..", "..", "spec", "vectors")

func loadVectors(t *testing.T, name string, into interface{}) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorsDir, name))
	if err != nil {
		t.Fatalf("spec vectors: %v", err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustU64(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("bad u64 %q", s)
	}
	return v
}

func TestPRNGVectors(t *testing.T) {
	var doc struct {
		Cases []struct {
			Seed    string
			Outputs []struct {
				Index   uint64
				Output  string
				Element uint32
			}
		}
	}
	loadVectors(t, "prng.json", &doc)
	count := 0
	for _, c := range doc.Cases {
		seed := mustU64(t, c.Seed)
		for _, o := range c.Outputs {
			if got := prngOutput(seed, o.Index); got != mustU64(t, o.Output) {
				t.Errorf("output(%d, %d) = %d, want %s", seed, o.Index, got, o.Output)
			}
			if o.Index <= 0xffffffff {
				if got := element(seed, uint32(o.Index)); got != o.Element {
					t.Errorf("element(%d, %d) = %d, want %d", seed, o.Index, got, o.Element)
				}
			}
			count++
		}
	}
	if count < 50 {
		t.Fatalf("only %d PRNG vectors", count)
	}
}

func TestChecksumVectors(t *testing.T) {
	var doc struct {
		Sequences []struct {
			Name     string
			Values   []uint32
			BytesHex string `json:"bytes_hex"`
			SHA256   string
		}
		Sessions []struct {
			Seed          string
			N             uint32
			FirstElements []uint32 `json:"first_elements"`
			LastElement   uint32   `json:"last_element"`
			SHA256        string
		}
	}
	loadVectors(t, "checksum.json", &doc)
	for _, s := range doc.Sequences {
		var b []byte
		for _, v := range s.Values {
			b = appendU32(b, v)
		}
		if hex.EncodeToString(b) != s.BytesHex {
			t.Errorf("%s: bytes %x, want %s", s.Name, b, s.BytesHex)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != s.SHA256 {
			t.Errorf("%s: sha256 %x, want %s", s.Name, sum, s.SHA256)
		}
	}
	for _, s := range doc.Sessions {
		seed := mustU64(t, s.Seed)
		for i, v := range s.FirstElements {
			if got := element(seed, uint32(i)); got != v {
				t.Errorf("seed %d element %d = %d, want %d", seed, i, got, v)
			}
		}
		if got := element(seed, s.N-1); got != s.LastElement {
			t.Errorf("seed %d last element = %d, want %d", seed, got, s.LastElement)
		}
		if sum := sessionChecksum(seed, s.N); hex.EncodeToString(sum[:]) != s.SHA256 {
			t.Errorf("seed %d n %d: checksum %x, want %s", seed, s.N, sum, s.SHA256)
		}
	}
	if len(doc.Sessions) == 0 || len(doc.Sequences) == 0 {
		t.Fatal("no checksum vectors")
	}
}

// decodeStatelessValue reads the value of a stateless DATA/FINAL frame.
func decodeStatelessValue(t *testing.T, frame []byte) (uint32, *big.Int) {
	t.Helper()
	length := int(binary.BigEndian.Uint16(frame[1:3]))
	if len(frame) != headerSize+length || length < 5 || frame[7] == 0 {
		t.Fatalf("malformed stateless frame %x", frame[:8])
	}
	return binary.BigEndian.Uint32(frame[3:7]), new(big.Int).SetBytes(frame[7:])
}

func TestStatelessSumVectors(t *testing.T) {
	var doc struct {
		Cases []struct {
			A              uint32
			N              uint32
			Sum            string
			LastValueBytes int `json:"last_value_bytes"`
		}
	}
	loadVectors(t, "stateless_sums.json", &doc)
	for _, c := range doc.Cases {
		aBig, scratch := new(big.Int).SetUint64(uint64(c.A)), new(big.Int)
		want, ok := new(big.Int).SetString(c.Sum, 10)
		if !ok {
			t.Fatalf("bad sum in vectors")
		}
		// The sum of the values this server puts on the wire, decoded back (every index).
		sum := new(big.Int)
		var frame []byte
		for k := uint32(0); k < c.N; k++ {
			frame = appendStatelessNumber(frame[:0], k == c.N-1, k, aBig, scratch)
			idx, v := decodeStatelessValue(t, frame)
			if idx != k {
				t.Fatalf("index %d encoded as %d", k, idx)
			}
			sum.Add(sum, v)
		}
		if sum.Cmp(want) != 0 {
			t.Errorf("a=%d n=%d: sum of encoded values differs from the vector", c.A, c.N)
		}
		if frame[0] != typeFinal {
			t.Errorf("a=%d n=%d: last frame type %d, want FINAL", c.A, c.N, frame[0])
		}
		if l := len(frame) - 7; l != c.LastValueBytes || statelessValueLen(c.A, c.N-1) != l {
			t.Errorf("a=%d n=%d: last value %d bytes, want %d", c.A, c.N, l, c.LastValueBytes)
		}
	}
}

type frameVector struct {
	Name      string
	Type      string
	Direction string
	Mode      *string
	Fields    map[string]interface{}
	Context   map[string]string
	Size      int
	Hex       string
}

func num(t *testing.T, v interface{}) uint32 {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("field %v is not a number", v)
	}
	return uint32(f)
}

func TestFrameVectors(t *testing.T) {
	var doc struct{ Frames []frameVector }
	loadVectors(t, "frames.json", &doc)
	if len(doc.Frames) < 20 {
		t.Fatalf("only %d frame vectors", len(doc.Frames))
	}
	for _, f := range doc.Frames {
		f := f
		t.Run(f.Name, func(t *testing.T) {
			want := mustHex(t, f.Hex)
			if len(want) != f.Size {
				t.Fatalf("vector size %d, hex %d bytes", f.Size, len(want))
			}
			var got []byte
			switch f.Type {
			case "HELLO":
				state, h, pe := parseHello(want, false)
				if state != helloDone {
					t.Fatalf("valid HELLO rejected: %v", pe)
				}
				if h.Mode != byte(num(t, f.Fields["mode"])) || h.N != num(t, f.Fields["n"]) ||
					h.NextIndex != num(t, f.Fields["next_index"]) || h.Resume != f.Fields["resume"].(bool) {
					t.Fatalf("decoded %+v, want %v", h, f.Fields)
				}
				if h.Mode == modeStateless && h.A != num(t, f.Fields["a"]) ||
					h.Mode == modeStateful && h.ClientID != f.Fields["client_id"] {
					t.Fatalf("decoded %+v, want %v", h, f.Fields)
				}
				// One byte short is not yet a HELLO; with EOF it is MALFORMED_FRAME.
				if st, _, _ := parseHello(want[:len(want)-1], false); st != helloNeedMore {
					t.Fatalf("truncated HELLO not waited for")
				}
				if st, _, pe := parseHello(want[:len(want)-1], true); st != helloFailed || pe.Code != MalformedFrame {
					t.Fatalf("EOF inside a HELLO: %v", pe)
				}
				return
			case "WELCOME":
				got = appendWelcome(nil, Welcome{
					Mode: byte(num(t, f.Fields["mode"])), N: num(t, f.Fields["n"]),
					NextIndex: num(t, f.Fields["next_index"]), IntervalMs: num(t, f.Fields["interval_ms"]),
					A: num(t, f.Fields["a"]), SessionTTLMs: num(t, f.Fields["session_ttl_ms"]),
				})
			case "DATA", "FINAL":
				welcome := mustHex(t, f.Context["welcome"])
				n := binary.BigEndian.Uint32(welcome[6:10])
				index := num(t, f.Fields["index"])
				if (index == n-1) != (f.Type == "FINAL") {
					t.Fatalf("vector inconsistent with n = %d", n)
				}
				if *f.Mode == "stateless" {
					a := new(big.Int).SetUint64(uint64(binary.BigEndian.Uint32(welcome[18:22])))
					got = appendStatelessNumber(nil, f.Type == "FINAL", index, a, new(big.Int))
					v, _ := new(big.Int).SetString(f.Fields["value"].(string), 10)
					if _, dv := decodeStatelessValue(t, got); dv.Cmp(v) != 0 {
						t.Fatalf("value %v, want %v", dv, v)
					}
				} else {
					var checksum []byte
					if f.Type == "FINAL" {
						checksum = mustHex(t, f.Fields["checksum"].(string))
					}
					got = appendStatefulNumber(nil, index, num(t, f.Fields["value"]), checksum)
				}
			case "ERROR":
				got = appendError(nil, Code(num(t, f.Fields["code"])), f.Fields["message"].(string))
				if name, ok := f.Fields["code_name"]; ok && Code(num(t, f.Fields["code"])).String() != name {
					t.Fatalf("code name %v, want %v", Code(num(t, f.Fields["code"])), name)
				}
			default:
				t.Fatalf("unknown type %s", f.Type)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%x\nwant\n%x", got, want)
			}
		})
	}
}

func TestInvalidFrameVectorsServerSide(t *testing.T) {
	var doc struct {
		Cases []struct {
			Name    string
			Decoder string
			Context map[string]string
			Hex     string
			EOF     bool
			Error   struct {
				Code uint16
				Name string
			}
		}
	}
	loadVectors(t, "invalid_frames.json", &doc)
	count := 0
	for _, c := range doc.Cases {
		if c.Decoder != "server" {
			continue
		}
		count++
		c := c
		t.Run(c.Name, func(t *testing.T) {
			buf := append(mustHex(t, c.Context["received"]), mustHex(t, c.Hex)...)
			state, _, pe := parseHello(buf, c.EOF)
			if state != helloFailed {
				t.Fatalf("state %d, want a rejection with %s", state, c.Error.Name)
			}
			if pe.Code != Code(c.Error.Code) || pe.Code.String() != c.Error.Name {
				t.Fatalf("code %v (%d), want %s (%d)", pe.Code, pe.Code, c.Error.Name, c.Error.Code)
			}
			if c.Context["received"] != "" {
				return // bytes after a complete HELLO: one at a time, the stream's reader sees them
			}
			// The same bytes arriving one at a time give the same answer.
			var st HelloState
			for i := 1; i <= len(buf); i++ {
				if st, _, pe = parseHello(buf[:i], c.EOF && i == len(buf)); st != helloNeedMore {
					break
				}
			}
			if st != helloFailed || pe.Code != Code(c.Error.Code) {
				t.Fatalf("byte by byte: state %d, %v", st, pe)
			}
		})
	}
	if count < 40 {
		t.Fatalf("only %d server-side cases", count)
	}
}
