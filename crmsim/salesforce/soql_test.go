package salesforce

import (
	"strings"
	"testing"
	"time"
)

func TestSOQL(t *testing.T) {
	now := time.Now()
	recs := []*record{
		{ID: "003sim000000001AAA", Type: "Contact", Fields: map[string]any{"LastName": "Lovelace", "Email": "ada@example.com", ExternalID: "a"}, Created: now, Modified: now},
		{ID: "003sim000000002AAA", Type: "Contact", Fields: map[string]any{"LastName": "Hopper", "Email": "grace@example.com", ExternalID: "b's"}, Created: now, Modified: now},
		{ID: "003sim000000003AAA", Type: "Contact", Fields: map[string]any{"LastName": "Turing", ExternalID: "c"}, Created: now, Modified: now},
	}
	tests := []struct {
		q    string
		want string // last names in order, or "error: <part of the message>"
	}{
		{"SELECT Id FROM Contact", "Lovelace Hopper Turing"},
		{"select id from contact where email = 'ADA@example.com'", "Lovelace"},
		{"SELECT Id, RecordSync_Id__c FROM Contact WHERE RecordSync_Id__c IN ('a', 'b\\'s')", "Lovelace Hopper"},
		{"SELECT Id FROM Contact WHERE RecordSync_Id__c NOT IN ('a')", "Hopper Turing"},
		{"SELECT Id FROM Contact WHERE Email = null", "Turing"},
		{"SELECT Id FROM Contact WHERE Email != null ORDER BY LastName", "Hopper Lovelace"},
		{"SELECT Id FROM Contact WHERE LastName LIKE '%er' OR (LastName = 'Turing' AND NOT Email = 'x')", "Hopper Turing"},
		{"SELECT Id FROM Contact ORDER BY Email DESC NULLS LAST LIMIT 2", "Hopper Lovelace"},
		{"SELECT Id FROM Contact ORDER BY LastName LIMIT 2 OFFSET 1", "Lovelace Turing"},
		{"SELECT COUNT() FROM Contact WHERE LastName > 'I'", "Lovelace Turing"},
		{"SELECT FROM Contact", "error: expecting a field name"},
		{"SELECT Id FROM Contact WHERE", "error: unexpected end"},
		{"SELECT Id FROM Contact WHERE Email = 'open", "error: unterminated"},
		{"SELECT Id FROM Contact LIMIT x", "error: non-negative integer"},
		{"SELECT Id FROM Contact WHERE Email ~ 'x'", "error: unexpected character"},
	}
	for _, tc := range tests {
		t.Run(tc.q, func(t *testing.T) {
			q, err := parseSOQL(tc.q)
			if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v; want one with %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := resolveFields(objects["Contact"], q); msg != "" {
				t.Fatal(msg)
			}
			var names []string
			for _, r := range q.run(recs) {
				names = append(names, r.Fields["LastName"].(string))
			}
			if got := strings.Join(names, " "); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
	if msg := resolveFields(objects["Contact"], &soqlQuery{Fields: []string{"ShoeSize"}}); !strings.Contains(msg, "No such column 'ShoeSize'") {
		t.Fatalf("an unknown field: %q", msg)
	}
}
