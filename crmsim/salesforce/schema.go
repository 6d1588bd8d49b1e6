package salesforce

import (
	"fmt"
	"strings"
	"time"
)

// field is one field of an emulated sObject, as describe reports it.
type field struct {
	Name       string
	Label      string
	Type       string // id, string, email, phone, reference, picklist, boolean, datetime
	Length     int
	Required   bool // on create
	System     bool // set by the org: not createable nor updateable
	ExternalID bool
	Default    string
}

// object is one emulated sObject type.
type object struct {
	Name      string
	Label     string
	Plural    string
	KeyPrefix string
	Fields    []field
	byLower   map[string]*field
}

func newObject(name, label, plural, prefix string, fs ...field) *object {
	system := []field{
		{Name: "Id", Label: label + " ID", Type: "id", Length: 18, System: true},
		{Name: "IsDeleted", Label: "Deleted", Type: "boolean", System: true},
		{Name: "Name", Label: "Full Name", Type: "string", Length: 121, System: true},
		{Name: "CreatedDate", Label: "Created Date", Type: "datetime", System: true},
		{Name: "LastModifiedDate", Label: "Last Modified Date", Type: "datetime", System: true},
		{Name: "SystemModstamp", Label: "System Modstamp", Type: "datetime", System: true},
	}
	o := &object{Name: name, Label: label, Plural: plural, KeyPrefix: prefix, Fields: append(system, fs...), byLower: map[string]*field{}}
	for i := range o.Fields {
		o.byLower[strings.ToLower(o.Fields[i].Name)] = &o.Fields[i]
	}
	return o
}

// field returns the field named name, whatever its case (Salesforce field
// names are case-insensitive).
func (o *object) field(name string) (*field, bool) {
	f, ok := o.byLower[strings.ToLower(name)]
	return f, ok
}

// objects are the sObject types of the emulated org: Contact and Lead,
// each with the external id field record-sync upserts by.
var objects = map[string]*object{
	"Contact": newObject("Contact", "Contact", "Contacts", "003",
		field{Name: "FirstName", Label: "First Name", Type: "string", Length: 40},
		field{Name: "LastName", Label: "Last Name", Type: "string", Length: 80, Required: true},
		field{Name: "Email", Label: "Email", Type: "email", Length: 80},
		field{Name: "Phone", Label: "Business Phone", Type: "phone", Length: 40},
		field{Name: "MobilePhone", Label: "Mobile Phone", Type: "phone", Length: 40},
		field{Name: "Title", Label: "Title", Type: "string", Length: 128},
		field{Name: "AccountId", Label: "Account ID", Type: "reference", Length: 18},
		field{Name: ExternalID, Label: "RecordSync Id", Type: "string", Length: 128, ExternalID: true},
	),
	"Lead": newObject("Lead", "Lead", "Leads", "00Q",
		field{Name: "FirstName", Label: "First Name", Type: "string", Length: 40},
		field{Name: "LastName", Label: "Last Name", Type: "string", Length: 80, Required: true},
		field{Name: "Company", Label: "Company", Type: "string", Length: 255, Required: true},
		field{Name: "Email", Label: "Email", Type: "email", Length: 80},
		field{Name: "Phone", Label: "Phone", Type: "phone", Length: 40},
		field{Name: "Title", Label: "Title", Type: "string", Length: 128},
		field{Name: "Status", Label: "Status", Type: "picklist", Length: 255, Default: "Open - Not Contacted"},
		field{Name: ExternalID, Label: "RecordSync Id", Type: "string", Length: 128, ExternalID: true},
	),
}

// objectFor returns the sObject type named name; sObject names in URLs are
// case-insensitive too.
func objectFor(name string) (*object, bool) {
	if o, ok := objects[name]; ok {
		return o, true
	}
	for n, o := range objects {
		if strings.EqualFold(n, name) {
			return o, true
		}
	}
	return nil, false
}

// sfTime is Salesforce's datetime format.
func sfTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000+0000") }

// Versions are the REST API versions the emulator serves: v31.0 (Summer
// '14) to CurrentVersion.
const (
	FirstVersion   = 31
	CurrentVersion = 68
)

// versionLabel names a release the way GET /services/data/ does: three a
// year, Summer '14 being 31.0.
func versionLabel(v int) string {
	i := v - FirstVersion
	return fmt.Sprintf("%s '%02d", [3]string{"Summer", "Winter", "Spring"}[i%3], 14+(i+2)/3)
}

// describe is the body of GET sobjects/{type}/describe.
func (o *object) describe(base string) map[string]any {
	fs := make([]map[string]any, 0, len(o.Fields))
	for _, f := range o.Fields {
		soapType := map[string]string{"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime"}[f.Type]
		if soapType == "" {
			soapType = "xsd:string"
		}
		fs = append(fs, map[string]any{
			"name": f.Name, "label": f.Label, "type": f.Type, "length": f.Length, "soapType": soapType,
			"nillable": !f.Required && !f.System && f.Type != "boolean", "createable": !f.System, "updateable": !f.System,
			"externalId": f.ExternalID, "unique": f.ExternalID, "idLookup": f.ExternalID || f.Name == "Id" || f.Type == "email",
			"defaultedOnCreate": f.System || f.Default != "", "defaultValue": nilIfEmpty(f.Default), "custom": strings.HasSuffix(f.Name, "__c"),
			"filterable": true, "sortable": true, "calculated": f.Name == "Name", "caseSensitive": false,
			"picklistValues": []any{}, "referenceTo": referenceTo(f),
		})
	}
	d := o.summary(base)
	d["fields"] = fs
	d["childRelationships"] = []any{}
	d["recordTypeInfos"] = []any{}
	return d
}

func referenceTo(f field) []string {
	if f.Type == "reference" {
		return []string{"Account"}
	}
	return []string{}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// summary is the object's entry in the global describe.
func (o *object) summary(base string) map[string]any {
	u := base + "/sobjects/" + o.Name
	return map[string]any{
		"name": o.Name, "label": o.Label, "labelPlural": o.Plural, "keyPrefix": o.KeyPrefix, "custom": false,
		"createable": true, "updateable": true, "deletable": true, "queryable": true, "retrieveable": true, "searchable": true,
		"undeletable": true, "layoutable": true, "replicateable": true, "triggerable": true,
		"urls": map[string]string{"sobject": u, "describe": u + "/describe", "rowTemplate": u + "/{ID}"},
	}
}
