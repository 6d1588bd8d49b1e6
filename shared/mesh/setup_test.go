package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/recordsync/record-sync/shared/natstest"
)

// TestEnsureLeavesCurrentStreamsAlone checks that after Ensure every stream
// and bucket reads back as configured, so that the next Ensure (every
// service's start) updates nothing: an update races in nats-server with
// consumers being created on the stream.
func TestEnsureLeavesCurrentStreamsAlone(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv, "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := Options{MaxInBytes: 1 << 30}
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(Streams(o), StatusBucketStream(o)) {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if have := st.CachedInfo().Config; !sameStream(want, have) {
			t.Errorf("stream %s would be updated again:\nwant %+v\nhave %+v", want.Name, want, have)
		}
	}
	for _, want := range Buckets(o) {
		st, err := js.Stream(ctx, "KV_"+want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if !sameBucket(want, st.CachedInfo().Config) {
			t.Errorf("bucket %s would be updated again: %+v", want.Bucket, st.CachedInfo().Config)
		}
	}
	// A changed setting is applied.
	o.StatusTTL = time.Hour
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_"+BucketStatus)
	if err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("the new status TTL was not applied: %v", err)
	}
}
