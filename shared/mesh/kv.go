package mesh

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow hands every update of w to fn until ctx ends or w closes, and
// closes ready (when not nil) once the values present at the start have
// been handed over. It stops w before it returns.
func Follow(ctx context.Context, w jetstream.KeyWatcher, ready chan<- struct{}, fn func(jetstream.KeyValueEntry)) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the initial values are all delivered
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			fn(e)
		}
	}
}
