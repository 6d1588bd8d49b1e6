package httpbody_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/recordsync/record-sync/shared/httpbody"
)

func TestRead(t *testing.T) {
	text := strings.Repeat("record-sync ", 10_000)
	for _, size := range []int64{-1, 0, 10, int64(len(text)), int64(len(text)) + 100, 1 << 40} {
		b, err := httpbody.Read(strings.NewReader(text), size)
		if err != nil || string(b) != text {
			t.Fatalf("size %d: %d bytes, %v", size, len(b), err)
		}
	}
}

// TestReadSizedOnce checks that a body of announced length fills the
// buffer it starts with.
func TestReadSizedOnce(t *testing.T) {
	text := bytes.Repeat([]byte("x"), 100_000)
	b, err := httpbody.Read(bytes.NewReader(text), int64(len(text)))
	if err != nil || len(b) != len(text) {
		t.Fatal(len(b), err)
	}
	if c := cap(b); c != len(text)+1 {
		t.Fatalf("cap %d for %d bytes: the buffer grew", c, len(text))
	}
}

func BenchmarkRead(b *testing.B) {
	text := bytes.Repeat([]byte("x"), 100_000)
	b.Run("sized", func(b *testing.B) {
		for b.Loop() {
			_, _ = httpbody.Read(bytes.NewReader(text), int64(len(text)))
		}
	})
	b.Run("unsized", func(b *testing.B) {
		for b.Loop() {
			_, _ = httpbody.Read(bytes.NewReader(text), -1)
		}
	})
}
