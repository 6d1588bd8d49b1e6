package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errCodeNoMessage is JetStream's "no message found".
const errCodeNoMessage = 10037

// FirstSince returns the sequence of the first message of stream stored
// at or after t, and false when there is none. (nats.go's GetMsg has no
// start time; the server's MSG.GET has, since 2.11.)
func FirstSince(ctx context.Context, js jetstream.JetStream, stream string, t time.Time) (uint64, bool, error) {
	req, err := json.Marshal(struct {
		StartTime time.Time `json:"start_time"`
		NoHeaders bool      `json:"no_hdr"`
	}{t.UTC(), true})
	if err != nil {
		return 0, false, err
	}
	msg, err := js.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, false, fmt.Errorf("first message of %s since %s: %w", stream, t.Format(time.RFC3339), err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message struct {
			Sequence uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, false, fmt.Errorf("first message of %s: %w", stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == errCodeNoMessage:
		return 0, false, nil
	case resp.Error != nil:
		return 0, false, fmt.Errorf("first message of %s: %w", stream, resp.Error)
	}
	return resp.Message.Sequence, true, nil
}
