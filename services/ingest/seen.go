package ingest

import (
	"hash/maphash"
	"time"
)

// seen remembers, for the duplicate window, which message of SYNC_GATHER
// holds each event id the edge has read there: 16 bytes per id (a 64-bit
// hash of the id and the message's sequence) in maps of one slot of time
// each, so that forgetting is dropping a map. A hash names a candidate
// only: the gatherer reads that message to tell a duplicate from a
// collision (gatherer.isDuplicate).
type seen struct {
	seed   maphash.Seed
	window time.Duration
	slot   time.Duration
	slots  map[int64]map[uint64]uint64 // slot number -> id hash -> sequence
}

// seenSlots is how many slots the window is cut into: memory is released
// an eighth of the window at a time.
const seenSlots = 8

func newSeen(window time.Duration) *seen {
	return &seen{seed: maphash.MakeSeed(), window: window, slot: max(window/seenSlots, time.Millisecond), slots: map[int64]map[uint64]uint64{}}
}

func (s *seen) hash(id string) uint64 { return maphash.String(s.seed, id) }

// add records that the message seq, stored at, holds id.
func (s *seen) add(id string, seq uint64, at time.Time) {
	n := at.UnixNano() / int64(s.slot)
	m := s.slots[n]
	if m == nil {
		m = map[uint64]uint64{}
		s.slots[n] = m
	}
	m[s.hash(id)] = seq
}

// lookup returns the sequences of the messages that may hold id, newest
// slot first.
func (s *seen) lookup(id string) []uint64 {
	h := s.hash(id)
	var seqs []uint64
	for _, m := range s.slots {
		if seq, ok := m[h]; ok {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// forget drops the slots wholly older than the window before now.
func (s *seen) forget(now time.Time) {
	oldest := now.Add(-s.window).UnixNano()/int64(s.slot) - 1
	for n := range s.slots {
		if n < oldest {
			delete(s.slots, n)
		}
	}
}

// len is how many ids are remembered.
func (s *seen) len() int {
	n := 0
	for _, m := range s.slots {
		n += len(m)
	}
	return n
}
