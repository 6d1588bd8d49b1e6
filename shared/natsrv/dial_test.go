package natsrv_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/recordsync/record-sync/shared/natsrv"
	"github.com/recordsync/record-sync/shared/natstest"
)

// TestDialExplainsRefusedCredentials: a wrong password, a missing one and
// a missing user each name what to check; a right one connects.
func TestDialExplainsRefusedCredentials(t *testing.T) {
	s := natstest.RunServer(t)
	url := s.ClientURL()
	tests := []struct {
		name, user, password string
		want                 []string // in the error; none: connects
	}{
		{name: "right password", user: "pusher", password: s.Passwords["pusher"]},
		{name: "wrong password", user: "pusher", password: "not-it", want: []string{`user "pusher"`, "RECORDSYNC_NATS_PASSWORD", "RECORDSYNC_NATS_PUSHER_PASSWORD"}},
		{name: "no password", user: "status", want: []string{`user "status" without a password`, "RECORDSYNC_NATS_STATUS_PASSWORD"}},
		{name: "no user", want: []string{"no user given", "RECORDSYNC_NATS_USER"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := natsrv.Dial(url, "test", tt.user, tt.password)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				nc.Close()
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected; want an error")
			}
			if !errors.Is(err, natsrv.ErrAuth) || !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("error %v does not wrap ErrAuth and nats.ErrAuthorization", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
