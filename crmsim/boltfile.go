package crmsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// boltFile is a bbolt database with one write transaction always open:
// reads see the writes made since the last commit, and commit writes them
// out. Without a path the database is a temporary file, removed as soon as
// it is open, so that an emulator without a data dir keeps nothing on disk
// past its process and still holds its records outside the heap.
//
// Commits do not fsync (NoSync): a record written survives the emulator's
// process being killed (the kernel holds the pages), not the machine
// losing power, which an emulator does not need.
//
// A boltFile is not safe for concurrent use: its owner calls it under its
// own lock.
type boltFile struct {
	db    *bolt.DB
	tx    *bolt.Tx
	dirty bool // tx holds writes not yet committed
}

// openBolt opens (or creates) the database at path ("": a temporary file)
// with each of buckets, and begins its write transaction. A database that
// another process holds open is an error after a second.
func openBolt(path string, buckets ...string) (*boltFile, error) {
	temp := path == ""
	if temp {
		f, err := os.CreateTemp("", "crmsim-*.db")
		if err != nil {
			return nil, err
		}
		path = f.Name()
		_ = f.Close()
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if temp {
		_ = os.Remove(path) // the open file stays usable
	}
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is open in another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &boltFile{db: db}
	if err := b.begin(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	for _, name := range buckets {
		if _, err := b.tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return nil, errors.Join(err, b.close())
		}
	}
	b.dirty = true
	return b, b.commit()
}

func (b *boltFile) begin() error {
	tx, err := b.db.Begin(true)
	b.tx = tx
	return err
}

// bucket is the bucket named name, which openBolt or empty made.
func (b *boltFile) bucket(name string) *bolt.Bucket { return b.tx.Bucket([]byte(name)) }

// changed notes that the open transaction holds writes.
func (b *boltFile) changed() { b.dirty = true }

// commit writes out the writes since the last commit and begins the next
// transaction. After a failed commit the writes since the last one are
// lost, as bbolt rolls them back.
func (b *boltFile) commit() error {
	if !b.dirty {
		return nil
	}
	b.dirty = false
	err := b.tx.Commit()
	return errors.Join(err, b.begin())
}

// empty replaces each of buckets by an empty one, and commits.
func (b *boltFile) empty(buckets ...string) error {
	for _, name := range buckets {
		if err := b.tx.DeleteBucket([]byte(name)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		if _, err := b.tx.CreateBucket([]byte(name)); err != nil {
			return err
		}
	}
	b.dirty = true
	return b.commit()
}

// close commits what is pending and closes the database.
func (b *boltFile) close() error {
	err := b.commit()
	if b.tx != nil {
		err = errors.Join(err, b.tx.Rollback())
		b.tx = nil
	}
	return errors.Join(err, b.db.Close())
}

// withLength returns s prefixed by its length, so that a key made of it
// and what follows is never a prefix of another such key.
func withLength(s string, extra int) []byte {
	out := make([]byte, 0, binary.MaxVarintLen32+len(s)+extra)
	return append(binary.AppendUvarint(out, uint64(len(s))), s...)
}
