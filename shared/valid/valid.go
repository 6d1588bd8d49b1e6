// Package valid holds the field errors that validation of events, rules and
// configuration returns, so that every edge reports them the same way: as
// the "errors" of an RFC 9457 problem at HTTP, as the reason of a rejected
// message on NATS.
package valid

import "strings"

// FieldError names one invalid field, in the location syntax Huma uses for
// problem details ("body.record_id", "body.events[3].data.email").
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
	Value    any    `json:"value,omitempty"`
}

// Error implements error.
func (e FieldError) Error() string { return e.Location + ": " + e.Message }

// Errors is a list of field errors.
type Errors []FieldError

// Add appends an error for location.
func (es *Errors) Add(location, message string, value any) {
	*es = append(*es, FieldError{Location: location, Message: message, Value: value})
}

// Err returns es as an error, or nil when it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Error implements error.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}
