package crm_test

import (
	"testing"

	"github.com/recordsync/record-sync/crm"
)

// TestZeroResultIsNotSuccess: a Result a plugin forgot to fill is Unset,
// not OK, and Settle makes it (and a missing one) a transient NO_RESULT.
func TestZeroResultIsNotSuccess(t *testing.T) {
	if (crm.Result{}).Class == crm.OK {
		t.Fatal("the zero Result reads as OK")
	}
	tests := []struct {
		name string
		in   []crm.Result
		n    int
		want []crm.Class
	}{
		{"all filled", []crm.Result{{Class: crm.OK}, {Class: crm.Permanent}}, 2, []crm.Class{crm.OK, crm.Permanent}},
		{"one left unset", []crm.Result{{Class: crm.OK}, {}}, 2, []crm.Class{crm.OK, crm.Transient}},
		{"fewer results than records", []crm.Result{{Class: crm.OK}}, 3, []crm.Class{crm.OK, crm.Transient, crm.Transient}},
		{"none", nil, 1, []crm.Class{crm.Transient}},
		{"more results than records", []crm.Result{{Class: crm.OK}, {Class: crm.OK}}, 1, []crm.Class{crm.OK}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crm.Settle(tt.in, tt.n)
			if len(got) != len(tt.want) {
				t.Fatalf("%d results for %d records", len(got), tt.n)
			}
			for i, r := range got {
				if r.Class != tt.want[i] {
					t.Fatalf("result %d: %+v, want class %v", i, r, tt.want[i])
				}
				if r.Class == crm.Transient && r.Code != crm.CodeNoResult {
					t.Fatalf("result %d: code %q, want %s", i, r.Code, crm.CodeNoResult)
				}
			}
		})
	}
}
